"""The file exporter's files hold spans (with record_text, the input text): owner-only
unless TTS_OTEL_OUTPUT_MODE asks otherwise, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import tts_otel
from tts_otel import ConfigurationError


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def umask() -> Iterator[None]:
    """A permissive umask, as many containers run with: it must not widen the modes."""
    with _umask(0):
        yield


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _export(output: Path, **settings: Any) -> None:
    telemetry = tts_otel.configure(
        exporters="file",
        output_dir=output,
        set_global=False,
        nvml=False,
        flush_on_signals=False,
        cuda=None,
        **settings,
    )
    with telemetry, tts_otel.synthesis(model="m", text="secret text", sample_rate=24000):
        pass


def test_files_are_owner_only_and_folders_too(tmp_path: Path, umask: None) -> None:
    output = tmp_path / "a" / "b"
    _export(output)
    assert (_mode(tmp_path / "a"), _mode(output)) == (0o700, 0o700)
    assert _mode(output / "traces.jsonl") == 0o600
    assert _mode(output / "metrics.jsonl") == 0o600


@pytest.mark.parametrize(
    ("given", "files", "folders"),
    [("640", 0o640, 0o750), ("0644", 0o644, 0o755), (0o660, 0o660, 0o770)],
)
def test_a_mode_asked_for_is_the_mode_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | int, files: int, folders: int
) -> None:
    with _umask(0o077):  # a strict umask must not narrow a mode asked for
        if isinstance(given, str):
            monkeypatch.setenv("TTS_OTEL_OUTPUT_MODE", given)
            _export(tmp_path / "out")
        else:
            _export(tmp_path / "out", output_mode=given)
    assert _mode(tmp_path / "out") == folders
    assert _mode(tmp_path / "out" / "traces.jsonl") == files


def test_an_existing_folder_and_file_keep_their_modes(tmp_path: Path, umask: None) -> None:
    output = tmp_path / "out"
    output.mkdir(0o755)
    (output / "traces.jsonl").touch(0o644)
    _export(output)
    assert _mode(output) == 0o755
    assert _mode(output / "traces.jsonl") == 0o644
    assert _mode(output / "metrics.jsonl") == 0o600


@pytest.mark.parametrize("value", ["rw-------", "900", "1777", "400", "0o200", "true"])
def test_a_bad_mode_fails_at_configure_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TTS_OTEL_OUTPUT_MODE", value)
    with pytest.raises(ConfigurationError, match="TTS_OTEL_OUTPUT_MODE"):
        _export(tmp_path / "out")
    assert not (tmp_path / "out").exists()
