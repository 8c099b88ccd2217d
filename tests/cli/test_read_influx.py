"""trace, report and compare on a real influxd 1.8.10 (InfluxQL and Flux) filled by the real
exporters, checked against the same spans read from the OTLP JSON file written in the same run:
one schema, three ways to read it, the same numbers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tts_otel
from tests.cli.foreign_shape import REQUESTS as FOREIGN_REQUESTS
from tests.cli.foreign_shape import Truth, store_foreign, truth
from tests.services import DATABASE, Influx18Server, free_port, influxdb, influxdb18
from tts_otel import cli
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.read.influxql import InfluxQLSource
from tts_otel.read.selection import Selection
from tts_otel.telemetry import Telemetry, set_telemetry

DB = DATABASE
REQUESTS = 24


@dataclass(frozen=True)
class Stored:
    server: Influx18Server
    directory: Path
    failed_trace: str


def _workload(telemetry: Telemetry) -> str:
    """Requests with and without KV cache (acoustic 3x slower without), two model versions,
    two text segments each, and one failure; returns the failed request's trace id."""
    for index in range(REQUESTS):
        kv_cache = index % 2 == 0
        with tts_otel.synthesis(
            model="ref",
            model_version="1.1" if index % 3 else "1.0",
            kv_cache=kv_cache,
            sample_rate=24_000 if index % 4 < 2 else 32_000,
            text="你好。Hello there.",
            telemetry=telemetry,
        ) as request:
            with request.stage("text_normalization"):
                time.sleep(0.001)
            for segment in range(2):
                with request.segment(segment):
                    with request.stage("acoustic"):
                        time.sleep(0.004 if kv_cache else 0.012)
                    with request.stage("vocoder"):
                        time.sleep(0.002)
            request.audio(seconds=0.5)
    trace_ids: list[str] = []
    with pytest.raises(RuntimeError, match="out of memory"):
        _failing(telemetry, trace_ids)
    return trace_ids[0]


def _failing(telemetry: Telemetry, trace_ids: list[str]) -> None:
    with tts_otel.synthesis(
        model="ref", model_version="1.1", kv_cache=True, telemetry=telemetry
    ) as request:
        trace_ids.append(format(request.span.get_span_context().trace_id, "032x"))
        with request.stage("acoustic"):
            raise RuntimeError("out of memory")


def _v1_env(
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    password: str = Influx18Server.PASSWORD,
    db: str = DB,
) -> None:
    for name, value in (
        ("URL", url),
        ("DB", db),
        ("USERNAME", Influx18Server.USER),
        ("PASSWORD", password),
        ("API", "v1"),
    ):
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)


def _v2_env(monkeypatch: pytest.MonkeyPatch, server: Influx18Server, db: str = DB) -> None:
    for name, value in (
        ("URL", server.url),
        ("API", "v2"),
        ("TOKEN", server.token),
        ("ORG", server.ORG),
        ("BUCKET", server.bucket(db)),
    ):
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)


def _store(output_dir: Path) -> str:
    """The workload, written to InfluxDB (as the environment says) and to files in
    ``output_dir``; returns the failed request's trace id."""
    telemetry = tts_otel.configure(
        service_name="tts-read",
        exporters=["influxdb", "file"],
        output_dir=output_dir,
        set_global=False,
        nvml=False,
        cuda=None,
        flush_on_signals=False,
    )
    try:
        return _workload(telemetry)
    finally:
        telemetry.shutdown()
        set_telemetry(None)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    tmp = tmp_path_factory.mktemp("read")
    with influxdb18(tmp / "influx") as server, pytest.MonkeyPatch.context() as patch:
        server.create_database(DB)
        _v1_env(patch, server.url)
        yield Stored(server, tmp / "out", _store(tmp / "out"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _three_ways(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    directory: Path,
    server: Influx18Server,
    db: str,
) -> tuple[str, str, str]:
    """The command's output from the file, from InfluxQL and from Flux."""
    at = next((i for i, arg in enumerate(command) if arg.startswith("--")), len(command))
    from_file = _run(capsys, *command[:at], str(directory), *command[at:])
    _v1_env(monkeypatch, server.url, db=db)
    from_influxql = _run(capsys, *command, "--influxdb", "--since", "1h")
    monkeypatch.delenv("TTS_OTEL_INFLUXDB_USERNAME")
    monkeypatch.delenv("TTS_OTEL_INFLUXDB_PASSWORD")
    _v2_env(monkeypatch, server, db=db)
    return from_file, from_influxql, _run(capsys, *command, "--influxdb", "--since", "1h")


# The read commands every stored workload is read with, from a file and from InfluxDB.
READ_COMMANDS = [
    ["report", "--by", "kv_cache,sample_rate"],
    ["report", "--where", "model_version=1.1", "--where", "outcome=ok", "--every", "1h"],
    ["trace", "--slowest", "3"],
    ["trace", "--slowest", "2", "--stage", "vocoder", "--where", "kv_cache=false"],
    ["trace", "--last", "2"],
    ["compare", "kv_cache=true", "kv_cache=false", "--resamples", "200"],
    ["compare", "model_version=1.0", "model_version=1.1", "--resamples", "200"],
]


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_influxql_flux_and_the_file_give_the_same_output(
    stored: Stored,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from_file, from_influxql, from_flux = _three_ways(
        capsys, monkeypatch, command, stored.directory, stored.server, DB
    )
    assert from_file == from_influxql == from_flux
    assert "tts." in from_file or "p50" in from_file


def test_report_shows_both_configurations_and_the_slow_acoustic(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v1_env(monkeypatch, stored.server.url)
    out = _run(capsys, "report", "--influxdb", "--by", "kv_cache")
    assert "== kv_cache=false ==" in out
    assert "== kv_cache=true ==" in out
    blocks = out.split("== kv_cache=true ==")
    acoustic_off = float(blocks[0].split("\nacoustic")[1].split()[0])
    acoustic_on = float(blocks[1].split("\nacoustic")[1].split()[0])
    assert acoustic_off > 2 * acoustic_on  # 24 ms against 8 ms per request
    assert "requests 13 (errors 1)" in blocks[1]


def test_compare_detects_the_kv_cache(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v1_env(monkeypatch, stored.server.url)
    out = _run(capsys, "compare", "--influxdb", "kv_cache=true,outcome=ok", "kv_cache=false")
    acoustic = next(line for line in out.splitlines() if line.startswith("acoustic   ")).split()
    assert acoustic[1] == "p50"
    assert acoustic[-2:] == ["B", "slower"]
    assert 10 < float(acoustic[4]) < 25  # 24 ms - 8 ms, give or take the scheduler


def test_one_trace_by_id_shows_its_error(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v2_env(monkeypatch, stored.server)
    out = _run(capsys, "trace", stored.failed_trace, "--influxdb")
    assert out.startswith(f"trace {stored.failed_trace}")
    assert "error RuntimeError" in out
    assert out.count("tts.synthesize") == 1


def test_small_chunks_stream_the_same_spans(stored: Stored) -> None:
    settings = influx_settings(
        url=stored.server.url, db=DB, username=Influx18Server.USER, password=Influx18Server.PASSWORD
    )
    whole = list(InfluxQLSource(settings).spans(Selection()))
    chunked = list(InfluxQLSource(settings, chunk_size=7).spans(Selection()))
    assert len(whole) == len(chunked) > REQUESTS * 6
    assert [s.span_id for s in whole] == [s.span_id for s in chunked]
    assert [s.start_ns for s in whole] == sorted(s.start_ns for s in whole)


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_errors_say_what_was_searched_and_how_to_fix_it(
    stored: Stored, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v1_env(monkeypatch, f"http://127.0.0.1:{free_port()}")
    err = _fails(capsys, "report", "--influxdb")
    assert "cannot reach InfluxDB" in err
    assert "TTS_OTEL_INFLUXDB_URL" in err

    _v1_env(monkeypatch, stored.server.url, password="wrong")
    err = _fails(capsys, "trace", "--influxdb", "--slowest", "1")
    assert "refused the credentials" in err
    assert "TTS_OTEL_INFLUXDB_PASSWORD" in err

    _v1_env(monkeypatch, stored.server.url)
    err = _fails(capsys, "report", "--influxdb", "--until", "2001-01-01T00:00:00")
    assert "no requests in InfluxDB (v1, InfluxQL)" in err
    assert "db=tts" in err
    assert "until 2001-01-01T00:00:00" in err

    err = _fails(capsys, "report", "--influxdb", "--influxdb-db", "nope")
    assert "database not found" in err
    assert "TTS_OTEL_INFLUXDB_DB" in err

    monkeypatch.setenv("TTS_OTEL_INFLUXDB_API", "v2")
    for name, value in (("TOKEN", "admin:wrong"), ("ORG", "-"), ("BUCKET", "tts/autogen")):
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)
    err = _fails(capsys, "compare", "--influxdb", "kv_cache=true", "kv_cache=false")
    assert "401" in err
    assert "TTS_OTEL_INFLUXDB_TOKEN" in err


def test_debian_influxd_1_6_answers_the_same_influxql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The InfluxQL path on the oldest server it claims (Debian's 1.6.7, no Flux)."""
    with influxdb(tmp_path / "influx16") as old:
        old.create_database(DB)
        _v1_env(monkeypatch, old.url)
        _store(tmp_path / "out")
        for command in (["report", "--by", "kv_cache"], ["trace", "--slowest", "2"]):
            from_file = _run(capsys, *command, str(tmp_path / "out"))
            assert _run(capsys, *command, "--influxdb") == from_file


# --- requests inside other instrumentation's spans (issue 19) -----------------------------
WEB_DB = "tts_web"


@dataclass(frozen=True)
class Web:
    server: Influx18Server
    directory: Path
    truth: Truth


@pytest.fixture(scope="module")
def web(stored: Stored) -> Web:
    """The foreign-parent workload (tests/cli/foreign_shape.py) in a database of its own on
    the same server, and in a file from the same run."""
    stored.server.create_database(WEB_DB)
    directory = stored.directory.parent / "web"
    with pytest.MonkeyPatch.context() as patch:
        _v1_env(patch, stored.server.url, db=WEB_DB)
        store_foreign(directory, ["influxdb", "file"])
    return Web(stored.server, directory, truth(directory / "traces.jsonl"))


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["report", "--by", "kv_cache"],
        ["trace", "--last", str(FOREIGN_REQUESTS)],
        ["trace", "--slowest", "3", "--stage", "acoustic.llm"],
        ["compare", "kv_cache=true", "kv_cache=false", "--resamples", "50"],
    ],
)
def test_requests_under_foreign_spans_read_the_same_from_influxdb(
    web: Web,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from_file, from_influxql, from_flux = _three_ways(
        capsys, monkeypatch, command, web.directory, web.server, WEB_DB
    )
    assert from_file == from_influxql == from_flux


def test_report_from_influxdb_counts_each_request_under_the_http_spans(
    web: Web, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    true = web.truth
    assert true.requests == FOREIGN_REQUESTS
    assert len(true.traces) < true.requests
    for api in ("v1", "v2"):
        if api == "v1":
            _v1_env(monkeypatch, web.server.url, db=WEB_DB)
        else:
            _v2_env(monkeypatch, web.server, db=WEB_DB)
        out = _run(capsys, "report", "--influxdb")
        assert f"requests {true.requests} (errors {true.errors})" in out
        assert f"audio {true.audio_seconds:.1f} s" in out
        acoustic = [totals["acoustic"] for totals in true.stages.values()]
        share = next(line for line in out.splitlines() if line.startswith("acoustic "))
        assert share.split()[-1] == f"{sum(acoustic) / true.processing_seconds:.1%}"
        assert f"{true.outside} stage span outside any request" in out
        trace = _run(capsys, "trace", "--influxdb", "--last", str(FOREIGN_REQUESTS))
        assert trace.count("\ntts.synthesize ") == true.requests
        spans = {line.split()[3] for line in trace.splitlines() if line.startswith("trace ")}
        assert spans == set(true.roots)
