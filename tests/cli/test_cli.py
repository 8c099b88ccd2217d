"""The tts-otel command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tts_otel
from tts_otel import cli
from tts_otel.telemetry import set_telemetry


@pytest.fixture(autouse=True)
def _restore_active():  # type: ignore[no-untyped-def]
    yield
    set_telemetry(None)


@pytest.mark.torch
def test_demo_prints_all_four_stages_and_writes_otlp_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["demo", "--requests", "3", "--flow-steps", "2", "--output-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert "\r" not in err  # no progress bar off a terminal
    assert "numpy" not in err.lower()  # a first run's screen has no torch warning
    for stage in ("speaker_embedding", "text_normalization", "acoustic", "vocoder"):
        assert stage in out
    assert "requests 3 (errors 0)" in out
    assert "real-time factor" in out
    assert (tmp_path / "traces.jsonl").stat().st_size > 0

    assert cli.main(["report", str(tmp_path)]) == 0
    assert "requests 3 (errors 0)" in capsys.readouterr().out


@pytest.mark.torch
def test_demo_with_unknown_exporter_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--requests", "1", "--exporter", "zipkinx"]) == 2
    assert "unknown exporter 'zipkinx'" in capsys.readouterr().err


def test_demo_without_torch_names_the_extra_to_install() -> None:
    blocked = (
        "import sys; sys.modules['torch'] = None; from tts_otel.cli import main; "
        "raise SystemExit(main(['demo', '--requests', '1']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'tts-otel[torch]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_without_traces_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "run `tts-otel demo` first" in capsys.readouterr().err


@pytest.mark.torch
def test_trace_prints_the_last_request_as_a_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["demo", "--requests", "2", "--flow-steps", "1", "--output-dir", str(tmp_path)])
        == 0
    )
    capsys.readouterr()
    assert cli.main(["trace", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("trace ")
    assert "0 .. " in lines[1]  # the shared time axis of the waterfall
    assert lines[2].startswith("tts.synthesize ")
    assert lines[2].endswith("|" + "█" * 40 + "|")  # the request spans the whole axis
    assert lines[3].startswith("  tts.speaker_embedding ")
    nested = [line for line in lines if line.startswith("    tts.acoustic.llm")]
    assert nested
    assert all("(segment " in line for line in nested)
    assert sum(line.startswith("tts.synthesize") for line in lines) == 1

    assert cli.main(["trace", str(tmp_path), "--last", "2"]) == 0
    assert capsys.readouterr().out.count("tts.synthesize") == 2


def test_trace_last_zero_is_rejected_not_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = tts_otel.configure(
        exporters="file",
        output_dir=tmp_path,
        set_global=False,
        nvml=False,
        flush_on_signals=False,
    )
    for _ in range(2):
        with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
            pass
    telemetry.shutdown()
    with pytest.raises(SystemExit) as exited:
        cli.main(["trace", str(tmp_path), "--last", "0"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "tts.synthesize" not in captured.out
    assert "--last" in captured.err
    assert "at least 1" in captured.err


@pytest.mark.torch
def test_report_by_every_and_compare_read_the_demo_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kv in ("--kv-cache", "--no-kv-cache"):
        argv = ["demo", "--requests", "2", "--flow-steps", "1", kv, "--output-dir", str(tmp_path)]
        assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path), "--by", "kv_cache", "--where", "outcome=ok"]) == 0
    out = capsys.readouterr().out
    assert "== kv_cache=false ==" in out
    assert "== kv_cache=true ==" in out
    assert out.count("requests 2 (errors 0)") == 2
    assert cli.main(["report", str(tmp_path), "--every", "1h"]) == 0
    assert "requests" in capsys.readouterr().out.splitlines()[0]
    assert cli.main(["compare", "kv_cache=true", "kv_cache=false", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "A: kv_cache=true (2 requests)" in out
    assert any(line.startswith("request ") and " rtf " in line for line in out.splitlines())


def test_read_commands_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path), "--where", "colour=red"]) == 2
    assert "unknown dimension 'colour'" in capsys.readouterr().err
    assert cli.main(["trace", str(tmp_path), "--since", "yesterday"]) == 2
    assert "cannot read the time 'yesterday'" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path), "--influxdb-url", "http://x"]) == 2
    assert "need --influxdb" in capsys.readouterr().err


def test_report_and_compare_write_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = tts_otel.configure(
        exporters="file",
        output_dir=tmp_path,
        set_global=False,
        nvml=False,
        flush_on_signals=False,
    )
    for index in range(6):
        with tts_otel.synthesis(model="m", kv_cache=index % 2 == 0) as req:
            with req.stage("vocoder"):
                pass
            req.audio(seconds=1.0)
    telemetry.shutdown()
    page = tmp_path / "report.html"
    assert cli.main(["report", str(tmp_path), "--html", str(page)]) == 0
    assert "requests 6 (errors 0)" in capsys.readouterr().out
    assert page.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    versus = tmp_path / "compare.html"
    argv = ["compare", "kv_cache=true", "kv_cache=false", str(tmp_path), "--html", str(versus)]
    assert cli.main(argv) == 0
    assert "no detectable difference" in versus.read_text(encoding="utf-8")
