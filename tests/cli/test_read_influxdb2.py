"""trace, report and compare on a real InfluxDB OSS 2.8.0 filled by the direct exporter's v2
path, read with Flux (``/api/v2/query``) and with InfluxQL through a DBRP mapping (v1
``/query``), checked against the same spans read from the OTLP JSON file of the same run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tts_otel
from tests.cli.test_read_influx import DB, READ_COMMANDS, REQUESTS, _fails, _run, _workload
from tests.services import Influx2Server, free_port, influxdb2
from tts_otel.telemetry import set_telemetry

_SETTINGS = ("URL", "API", "DB", "USERNAME", "PASSWORD", "TOKEN", "ORG", "BUCKET")


@dataclass(frozen=True)
class Stored:
    server: Influx2Server
    directory: Path
    failed_trace: str


def _flux_env(monkeypatch: pytest.MonkeyPatch, server: Influx2Server, token: str = "") -> None:
    """The v2 settings of a 2.x user: the org, bucket and token (API v2 follows the token)."""
    for name in _SETTINGS:
        monkeypatch.delenv(f"TTS_OTEL_INFLUXDB_{name}", raising=False)
    for name, value in (
        ("URL", server.url),
        ("TOKEN", token or server.token),
        ("ORG", server.ORG),
        ("BUCKET", server.bucket(DB)),
    ):
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)


def _influxql_env(monkeypatch: pytest.MonkeyPatch, server: Influx2Server, token: str = "") -> None:
    """InfluxQL on 2.x: the v1 API, the DBRP mapping's database, the token as the password."""
    for name in _SETTINGS:
        monkeypatch.delenv(f"TTS_OTEL_INFLUXDB_{name}", raising=False)
    for name, value in (
        ("URL", server.url),
        ("API", "v1"),
        ("DB", DB),
        ("USERNAME", "reader"),
        ("PASSWORD", token or server.token),
    ):
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    tmp = tmp_path_factory.mktemp("read2")
    with influxdb2(tmp / "influx") as server, pytest.MonkeyPatch.context() as patch:
        server.create_database(DB)
        _flux_env(patch, server)
        telemetry = tts_otel.configure(
            service_name="tts-read",
            exporters=["influxdb", "file"],
            output_dir=tmp / "out",
            set_global=False,
            nvml=False,
            cuda=None,
            flush_on_signals=False,
        )
        try:
            failed = _workload(telemetry)
        finally:
            telemetry.shutdown()
            set_telemetry(None)
        yield Stored(server, tmp / "out", failed)


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_flux_and_influxql_on_2_8_give_the_files_output(
    stored: Stored,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = next((i for i, arg in enumerate(command) if arg.startswith("--")), len(command))
    from_file = _run(capsys, *command[:at], str(stored.directory), *command[at:])
    _flux_env(monkeypatch, stored.server)
    from_flux = _run(capsys, *command, "--influxdb", "--since", "1h")
    _influxql_env(monkeypatch, stored.server)
    from_influxql = _run(capsys, *command, "--influxdb", "--since", "1h")
    assert from_file == from_flux == from_influxql
    assert "tts." in from_file or "p50" in from_file


def test_report_counts_every_request_and_the_failure(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _flux_env(monkeypatch, stored.server)
    out = _run(capsys, "report", "--influxdb", "--by", "kv_cache")
    without, with_cache = out.split("== kv_cache=true ==")
    assert f"requests {REQUESTS // 2} (errors 0)" in without
    assert f"requests {REQUESTS // 2 + 1} (errors 1)" in with_cache  # and the failed one


def test_one_trace_by_id_shows_its_error_with_both_languages(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for environment in (_flux_env, _influxql_env):
        environment(monkeypatch, stored.server)
        outputs.append(_run(capsys, "trace", stored.failed_trace, "--influxdb"))
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(f"trace {stored.failed_trace}")
    assert "error RuntimeError" in outputs[0]
    assert outputs[0].count("tts.synthesize") == 1


def test_errors_on_2_8_say_what_was_searched_and_how_to_fix_it(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _flux_env(monkeypatch, stored.server, token="not-the-token")
    err = _fails(capsys, "report", "--influxdb")
    assert "401" in err
    assert "TTS_OTEL_INFLUXDB_TOKEN" in err
    assert "not-the-token" not in err

    _flux_env(monkeypatch, stored.server)
    err = _fails(capsys, "report", "--influxdb", "--influxdb-bucket", "nope")
    assert "404" in err
    assert "TTS_OTEL_INFLUXDB_BUCKET" in err

    err = _fails(capsys, "report", "--influxdb", "--until", "2001-01-01T00:00:00")
    assert "no requests in InfluxDB (v2, Flux)" in err
    assert f"bucket={DB}" in err

    monkeypatch.setenv("TTS_OTEL_INFLUXDB_URL", f"http://127.0.0.1:{free_port()}")
    err = _fails(capsys, "report", "--influxdb")
    assert "cannot reach InfluxDB" in err
    assert "TTS_OTEL_INFLUXDB_URL" in err

    _influxql_env(monkeypatch, stored.server, token="not-the-token")
    err = _fails(capsys, "trace", "--influxdb", "--slowest", "1")
    assert "refused the credentials" in err
    assert "TTS_OTEL_INFLUXDB_PASSWORD" in err
    assert "not-the-token" not in err

    # 2.x answers "default retention policy not set for: nope" for a database no DBRP
    # mapping names (1.x: "database not found"): the fix is the same setting, or a mapping.
    _influxql_env(monkeypatch, stored.server)
    err = _fails(capsys, "report", "--influxdb", "--influxdb-db", "nope")
    assert "TTS_OTEL_INFLUXDB_DB" in err
    assert "DBRP mapping" in err
