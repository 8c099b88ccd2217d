"""The direct InfluxDB exporter on a real influxd 1.x, and its v2 API on a checking endpoint."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tests.services import DATABASE, InfluxQLServer, InfluxServer, free_port
from tts_otel.exporters.influxdb.line_protocol import REPLACEMENT, line
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.exporters.influxdb.writer import InfluxWriter
from tts_otel.telemetry import Telemetry, set_telemetry

DB = DATABASE


def _env(
    monkeypatch: pytest.MonkeyPatch, server_url: str, password: str = InfluxServer.PASSWORD
) -> None:
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_URL", server_url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_DB", DB)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_USERNAME", InfluxServer.USER)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_PASSWORD", password)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_EXPORT_DEADLINE", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")


def _run(requests: int, collected: InMemorySpanExporter | None = None) -> Telemetry:
    from tts_otel.reference import TEXTS, ReferencePipeline

    extra = [SimpleSpanProcessor(collected)] if collected is not None else []
    telemetry = tts_otel.configure(
        service_name="tts-influx",
        exporters=["influxdb", *extra],
        set_global=False,
        nvml=False,
        cuda=None,
    )
    pipeline = ReferencePipeline(flow_steps=1)
    for index in range(requests):
        pipeline.synthesize(TEXTS[index % 4])
    return telemetry


@pytest.fixture(autouse=True)
def _restore_active() -> Iterator[None]:
    yield
    set_telemetry(None)


@pytest.mark.torch
def test_a_workload_run_lands_in_the_collectors_schema(
    server: InfluxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, server.url)
    collected = InMemorySpanExporter()
    _run(3, collected).shutdown()

    sdk = {
        format(s.context.span_id, "016x"): s for s in collected.get_finished_spans() if s.context
    }
    stored = {row["span_id"]: row for row in server.query("SELECT * FROM spans", DB)}
    assert set(stored) == set(sdk)
    for span_id, span in sdk.items():
        row = stored[span_id]
        assert row["duration_nano"] == span.end_time - span.start_time  # type: ignore[operator]
        assert row["span.name"] == span.name
        assert row["span.kind"] == "Internal"
        assert row["service.name"] == "tts-influx"
        assert row.get("tts.stage") == (span.attributes or {}).get("tts.stage")
    assert len(server.query("SELECT * FROM spans", DB)) == len(sdk)
    per_stage = server.query('SELECT sum("duration_nano") FROM spans GROUP BY "tts.stage"', DB)
    assert {r["tts.stage"] for r in per_stage} >= {"speaker_embedding", "acoustic", "vocoder", ""}

    measurements = {r["name"] for r in server.query("SHOW MEASUREMENTS", DB)}
    assert {"spans", "tts.stage.duration", "tts.request.duration", "tts.requests"} <= measurements
    field_types = {
        r["fieldKey"]: r["fieldType"]
        for r in server.query('SHOW FIELD KEYS FROM "tts.stage.duration"', DB)
    }
    assert field_types["count"] == "float"
    assert field_types["+Inf"] == "float"
    assert field_types["0.005"] == "float"
    assert field_types["600"] == "float"
    assert field_types["start_time_unix_nano"] == "integer"
    tags = {r["tagKey"] for r in server.query('SHOW TAG KEYS FROM "tts.stage.duration"', DB)}
    assert {"tts.stage", "service.name", "otel.library.name", "tts.sample_rate"} <= tags
    counter = server.query(
        'SELECT last("counter") FROM "tts.requests" WHERE "tts.outcome"=\'ok\'', DB
    )
    assert counter[0]["last"] == 3


_text = st.text(st.characters(codec="utf-8"), max_size=40)
# The test's own keys and the reserved ones: a field named like them is not the point here.
_OWN_KEYS = frozenset({"id", "t", "n", "time", "_field", "_measurement"})


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tag=_text, field_key=_text.filter(lambda k: k and k not in _OWN_KEYS), value=_text)
def test_unicode_survives_the_real_server(
    server: InfluxServer, tag: str, field_key: str, value: str
) -> None:
    """Arbitrary text written and read back: unchanged, or changed exactly as documented."""
    writer = InfluxWriter(
        influx_settings(
            url=server.url, db=DB, username=InfluxServer.USER, password=InfluxServer.PASSWORD
        )
    )
    point = line("prop", {"id": "x", "t": tag}, {field_key: value, "n": 1}, 1_000)
    assert point is not None
    assert writer.write([point])
    row = server.query('SELECT * FROM "prop" WHERE "id"=\'x\'', DB)[-1]
    server.query('DROP SERIES FROM "prop"', DB)
    assert_documented(row, tag, field_key, value)


def documented(text: str, tag_like: bool) -> str:
    """``text`` as the line protocol writes it: control characters replaced, and a tag-like
    string's trailing backslash (it would escape the separator)."""
    cleaned = "".join(REPLACEMENT if ord(c) < 32 or ord(c) == 127 else c for c in text)
    if tag_like and cleaned.endswith("\\"):
        cleaned = cleaned[:-1] + REPLACEMENT
    return cleaned


def assert_documented(row: dict[str, Any], tag: str, field_key: str, value: str) -> None:
    """The stored ``row`` of a point ``prop,t=tag field_key=value,n=1``: unchanged, or
    changed exactly as documented."""
    expected_key = documented(field_key, tag_like=True)
    if expected_key in _OWN_KEYS:
        return  # became one of them through the documented changes
    assert row.get("t") == (documented(tag, tag_like=True) or None)
    assert row[expected_key] == documented(value, tag_like=False)


@pytest.mark.torch
def test_wrong_password_is_one_clear_error_and_synthesis_goes_on(
    server: InfluxServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _env(monkeypatch, server.url, password="not-the-password")
    with caplog.at_level(logging.WARNING, logger="tts_otel.exporters.influxdb"):
        telemetry = _run(2)
        telemetry.force_flush()
        telemetry.shutdown()
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert "authorization failed" in failures[0]
    assert "not-the-password" not in caplog.text
    assert server.query("SHOW MEASUREMENTS", DB) == []


@pytest.mark.torch
def test_server_never_started_costs_synthesis_nothing_but_spooling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, f"http://127.0.0.1:{free_port()}")
    telemetry = _run(2)
    # Everything the pipeline made is waiting, bounded, for a server that never came.
    telemetry.force_flush()
    health = telemetry.exporter_health()["influxdb"]
    telemetry.shutdown()
    assert health["sent"] == 0
    assert health["spooled"] > 0


@pytest.mark.torch
def test_server_killed_and_restarted_stores_every_span_once(
    server: InfluxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, server.url)
    assert_every_span_once_across_a_restart(server, DB)


def assert_every_span_once_across_a_restart(server: InfluxQLServer, database: str) -> None:
    """Export to ``server`` (as the environment says) while it is killed and started again:
    every span is stored, none twice."""
    from tts_otel.reference import TEXTS, ReferencePipeline

    collected = InMemorySpanExporter()
    telemetry = tts_otel.configure(
        exporters=["influxdb", SimpleSpanProcessor(collected)],
        set_global=False,
        nvml=False,
        cuda=None,
    )
    pipeline = ReferencePipeline(flow_steps=1)
    pipeline.synthesize(TEXTS[0])
    telemetry.force_flush()
    server.kill()
    for text in TEXTS[:3]:
        pipeline.synthesize(text)
    telemetry.force_flush()  # fails: batches go to the spool
    server.start()
    pipeline.synthesize(TEXTS[3])
    telemetry.shutdown()  # replays the spool, then sends the rest

    expected = {
        format(s.context.span_id, "016x") for s in collected.get_finished_spans() if s.context
    }
    stored = server.query("SELECT * FROM spans", database)
    span_ids = [row["span_id"] for row in stored]
    assert len(span_ids) == len(set(span_ids))
    assert set(span_ids) == expected


_CHILD = """
import sys, tts_otel
from tts_otel.reference import ReferencePipeline
telemetry = tts_otel.configure(exporters="influxdb", nvml=False)
ReferencePipeline(flow_steps=1).synthesize(sys.argv[1])
telemetry.shutdown()
"""


@pytest.mark.torch
def test_disk_spool_survives_a_restart_of_the_exporting_process(
    server: InfluxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _env(monkeypatch, server.url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_SPOOL_DIR", str(tmp_path / "spool"))
    spool = tmp_path / "spool"

    def exporting_process(text: str) -> None:
        done = subprocess.run([sys.executable, "-c", _CHILD, text], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    server.kill()
    exporting_process("你好，世界。")
    assert list(spool.glob("*.lp"))
    server.start()
    exporting_process("Hello again.")  # replays the first process's spool, then sends its own
    assert not list(spool.glob("*.lp"))
    requests = server.query("SELECT * FROM spans WHERE \"span.name\"='tts.synthesize'", DB)
    assert len(requests) == 2


class _V2Endpoint(BaseHTTPRequestHandler):
    """Checks requests the way the InfluxDB v2 API documents POST /api/v2/write."""

    script: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.seen.append(
            {
                "path": url.path,
                "query": dict(urllib.parse.parse_qsl(url.query)),
                "authorization": self.headers.get("Authorization"),
                "encoding": self.headers.get("Content-Encoding"),
                "body": body.decode(),
            }
        )
        status, headers, payload = self.script.pop(0) if self.script else (204, {}, b"")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def v2_endpoint() -> Iterator[str]:
    endpoint = HTTPServer(("127.0.0.1", 0), _V2Endpoint)
    _V2Endpoint.script, _V2Endpoint.seen = [], []
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{endpoint.server_port}"
    finally:
        endpoint.shutdown()


def test_v2_writes_as_documented_and_honours_retry_after(
    v2_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = InfluxWriter(
        influx_settings(environ={}, url=v2_endpoint, org="acme", bucket="tts", token="t0ken")
    )
    _V2Endpoint.script = [(429, {"Retry-After": "0.2"}, b""), (503, {}, b"")]
    assert writer.write(["m,a=b f=1i 1", "m,a=c f=2i 2"])
    first, *_, last = _V2Endpoint.seen
    assert len(_V2Endpoint.seen) == 3  # 429, 503, then accepted
    assert first["path"] == "/api/v2/write"
    assert first["query"] == {"org": "acme", "bucket": "tts", "precision": "ns"}
    assert first["authorization"] == "Token t0ken"
    assert first["encoding"] == "gzip"
    assert last["body"].splitlines() == ["m,a=b f=1i 1", "m,a=c f=2i 2"]
    assert writer.sent_points == 2

    _V2Endpoint.script = [
        (
            401,
            {"Content-Type": "application/json"},
            b'{"code":"unauthorized","message":"unauthorized access"}',
        )
    ] * 2
    with caplog.at_level(logging.WARNING):
        assert not writer.write(["m f=1i 3"])
        assert not writer.write(["m f=1i 4"])
    assert writer.rejected_points == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "authorization failed" in warnings[0]
    assert "unauthorized access" in warnings[0]
    assert "t0ken" not in caplog.text
    writer.close()


def test_v2_needs_org_bucket_and_token() -> None:
    with pytest.raises(tts_otel.ConfigurationError, match="TTS_OTEL_INFLUXDB_ORG"):
        influx_settings(environ={"TTS_OTEL_INFLUXDB_API": "v2"})
    assert "t0ken" not in repr(influx_settings(environ={}, org="o", bucket="b", token="t0ken"))
    assert json.dumps(str(influx_settings(environ={}, password="pw"))).count("pw") == 0


def test_doctor_passes_on_a_ready_server(
    server: InfluxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tts_otel import cli

    _env(monkeypatch, server.url)
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["ok", "reachable"],
        ["ok", "authenticated"],
        ["ok", "database"],
        ["ok", "test"],
        ["warn", "span"],
        ["fix:", "spans"],
    ]
    # Debian's influxd keeps 1.x's default limits: spans stop after 100,000 (see the fix).
    assert "max-values-per-tag = 100000" in out
    assert server.query("SELECT * FROM tts_otel_doctor", DB)


@pytest.mark.parametrize(
    ("change", "failed", "fix"),
    [
        ({"TTS_OTEL_INFLUXDB_PASSWORD": "wrong"}, "authenticated", "TTS_OTEL_INFLUXDB_PASSWORD"),
        ({"TTS_OTEL_INFLUXDB_DB": "nope"}, "database", 'CREATE DATABASE "nope"'),
        ({"TTS_OTEL_INFLUXDB_URL": "http://127.0.0.1:1"}, "reachable", "TTS_OTEL_INFLUXDB_URL"),
    ],
)
def test_doctor_names_the_failing_check_and_its_fix(
    server: InfluxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    failed: str,
    fix: str,
) -> None:
    from tts_otel import cli

    _env(monkeypatch, server.url)
    for key, value in change.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {failed}" in out
    assert fix in out
    assert "wrong" not in out


@pytest.mark.torch
def test_demo_exports_to_influxdb_and_says_where(
    server: InfluxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tts_otel import cli

    _env(monkeypatch, server.url)
    assert cli.main(["demo", "--requests", "2", "--flow-steps", "1", "--exporter", "influxdb"]) == 0
    assert f"telemetry went to influxdb: {server.url} db={DB}" in capsys.readouterr().out
    requests = server.query("SELECT * FROM spans WHERE \"span.name\"='tts.synthesize'", DB)
    assert len(requests) == 2
