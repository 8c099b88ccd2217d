"""The direct InfluxDB exporter under bad settings, bad values and server faults.

Real influxd 1.x on loopback wherever a server is involved; default server
limits except in the test about a limit.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.services import DATABASE, InfluxQLServer, InfluxServer, free_port, influxdb
from tts_otel import cli
from tts_otel.config import Settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.influxdb.exporter import (
    InfluxDBMetricExporter,
    InfluxDBSpanExporter,
    influxdb_exporter,
)
from tts_otel.exporters.influxdb.line_protocol import MAX_TAG_BYTES
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.exporters.influxdb.writer import InfluxWriter

DB = DATABASE
URL = "TTS_OTEL_INFLUXDB_URL"


def _settings(server: InfluxServer, **overrides: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "database": DB,
        "username": InfluxServer.USER,
        "password": InfluxServer.PASSWORD,
        "export_deadline_s": 2.0,
        **overrides,
    }


# --- item 7, 15, 16: settings rejected at start ------------------------------
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (URL, "http://127.0.0.1:abc"),
        (URL, "http://127.0.0.1:99999"),
        (URL, "http://127.0.0.1:8086/a b"),
        (URL, "http://local host:8086"),
        (URL, "http://[::1"),
        (URL, "http://:8086"),
        ("TTS_OTEL_INFLUXDB_TIMEOUT", "nan"),
        ("TTS_OTEL_INFLUXDB_TIMEOUT", "inf"),
        ("TTS_OTEL_INFLUXDB_EXPORT_DEADLINE", "nan"),
        ("TTS_OTEL_INFLUXDB_SPOOL_BYTES", "0.4"),
        ("TTS_OTEL_INFLUXDB_SPOOL_BYTES", "1e400"),
        ("TTS_OTEL_INFLUXDB_SPOOL_DIR", "/etc/passwd"),
    ],
)
def test_a_bad_setting_is_rejected_at_start_naming_it_and_the_fix(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        influx_settings(environ={variable: value})
    assert caught.value.setting == variable
    assert "Fix: " in str(caught.value)
    # The SDK entry point (opentelemetry-instrument) builds the exporter the same way.
    with pytest.raises(ConfigurationError):
        InfluxDBSpanExporter(influx_settings(environ={variable: value}))


def test_overrides_are_checked_like_variables() -> None:
    with pytest.raises(ConfigurationError, match="TTS_OTEL_INFLUXDB_TIMEOUT"):
        influx_settings(environ={}, timeout_s=math.nan)
    with pytest.raises(ConfigurationError, match="TTS_OTEL_INFLUXDB_SPOOL_BYTES"):
        influx_settings(environ={}, spool_bytes=0.4)
    with pytest.raises(TypeError, match="datbase"):
        influx_settings(environ={}, datbase="x")


def test_the_documented_keyword_names_are_honoured() -> None:
    settings = influx_settings(environ={}, database="speech", retention_policy="week")
    assert (settings.database, settings.retention_policy) == ("speech", "week")
    assert influx_settings(environ={}, db="speech", rp="week") == settings


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc", "http://[::1", "http://a b:1"])
def test_doctor_prints_a_bad_url_as_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    monkeypatch.setenv(URL, url)
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert URL in err
    assert "Traceback" not in err


# --- item 14: credentials in the URL -----------------------------------------
def test_credentials_in_the_url_are_used_and_never_printed(
    server: InfluxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_url = f"http://{InfluxServer.USER}:{InfluxServer.PASSWORD}@127.0.0.1:{server.port}"
    settings = influx_settings(environ={URL: secret_url, "TTS_OTEL_INFLUXDB_DB": DB})
    assert (settings.username, settings.password) == (InfluxServer.USER, InfluxServer.PASSWORD)
    assert InfluxServer.PASSWORD not in settings.url + settings.target + repr(settings)
    writer = InfluxWriter(settings)
    assert writer.write(["m f=1i 1"])
    writer.close()
    assert server.query("SELECT * FROM m", DB)

    monkeypatch.setenv(URL, secret_url)
    parts = influxdb_exporter(Settings())
    assert parts.where == f"influxdb: {server.url} db={DB}"  # what `destinations` shows
    assert parts.close is not None
    parts.close()
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_DB", DB)
    assert cli.main(["doctor"]) == 0
    wrong = f"http://{InfluxServer.USER}:wr0ng-pw@127.0.0.1:{server.port}"
    monkeypatch.setenv(URL, wrong)
    assert cli.main(["doctor"]) == 1
    with caplog.at_level(logging.INFO):
        writer = InfluxWriter(influx_settings())
        assert not writer.write(["m f=1i 2"])
        writer.close()
    out = capsys.readouterr()
    assert "authorization failed" in caplog.text
    for text in (out.out, out.err, caplog.text):
        assert InfluxServer.PASSWORD not in text
        assert "wr0ng-pw" not in text


def test_credentials_in_the_url_and_in_variables_are_refused_without_printing_them() -> None:
    environ = {URL: "http://admin:s3cret@127.0.0.1:8086", "TTS_OTEL_INFLUXDB_USERNAME": "tts"}
    with pytest.raises(ConfigurationError, match=URL) as caught:
        influx_settings(environ=environ)
    assert "s3cret" not in str(caught.value)


# --- item 9: one bad value costs that point only -----------------------------
def test_an_unstorable_value_costs_its_point_only_counted(server: InfluxServer) -> None:
    writer = InfluxWriter(influx_settings(environ={}, **_settings(server)))
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("tts_otel")
    tokens = meter.create_counter("tts.speech_tokens")
    requests = meter.create_counter("tts.requests")
    exporter = InfluxDBMetricExporter(writer=writer)
    for _ in range(3):  # cumulative: each export carries the bad point again
        tokens.add(2**63, {"tts.stage": "acoustic"})
        requests.add(1, {"tts.stage": "x" * 70_000})  # a tag over InfluxDB's 64 KB key limit
        requests.add(1, {"tts.stage": "vocoder"})
        data = reader.get_metrics_data()
        assert data is not None
        exporter.export(data)
    health = dict(writer.health())
    writer.close()
    assert health == {  # the 2**63 point, once an export
        "sent": 6,
        "dropped": 3,
        "spooled": 0,
        "spool_bytes": 0,
        "spool_limit_bytes": writer.settings.spool_bytes,
    }
    stored = server.query('SELECT last("counter") FROM "tts.requests" GROUP BY "tts.stage"', DB)
    assert {row["tts.stage"]: row["last"] for row in stored} == {
        "vocoder": 3,
        "x" * MAX_TAG_BYTES: 3,
    }


def test_a_partial_write_stores_the_rest_and_counts_what_the_server_dropped(
    server: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    writer = InfluxWriter(influx_settings(environ={}, **_settings(server)))
    assert_partial_writes_counted(writer, server, DB, caplog)


def assert_partial_writes_counted(
    writer: InfluxWriter, server: InfluxQLServer, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Three batches of a stored point and a field type conflict: each stored but for the
    conflict, counted so, and one warning."""
    assert writer.write(["m,k=a f=1i 1"])
    with caplog.at_level(logging.WARNING):
        for batch in range(3):
            # A field type conflict: the server stores the other points and drops this one.
            assert writer.write([f'm,k=a f="text" {10 + batch}', f"m,k=b f=2i {10 + batch}"])
    writer.close()
    assert dict(writer.health()) == {
        "sent": 4,
        "dropped": 3,
        "spooled": 0,
        "spool_bytes": 0,
        "spool_limit_bytes": writer.settings.spool_bytes,
    }
    assert len(server.query("SELECT * FROM m WHERE \"k\"='b'", database)) == 3
    assert len([r for r in caplog.records if "partial write" in r.getMessage()]) == 1


# --- item 10: InfluxDB 1.x's cardinality limits ------------------------------
@pytest.fixture
def limited(tmp_path: Path) -> Iterator[InfluxServer]:
    with influxdb(tmp_path / "influx", {"max-values-per-tag": "50"}) as running:
        running.create_database(DB)
        yield running


def _spans(count: int) -> list[ReadableSpan]:
    collected = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("tts_otel")
    for index in range(count):
        with tracer.start_as_current_span("tts.synthesize", attributes={"n": index}):
            pass
    return list(collected.get_finished_spans())


def test_the_span_limit_of_influxdb_1_is_one_clear_error_and_metrics_still_flow(
    limited: InfluxServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer = InfluxWriter(influx_settings(environ={}, **_settings(limited)))
    spans = InfluxDBSpanExporter(writer=writer)
    spanned = _spans(80)
    with caplog.at_level(logging.WARNING):
        for start in range(0, 80, 10):
            spans.export(spanned[start : start + 10])
            assert writer.write([f"tts.requests,tts.stage=acoustic counter={start}i {start + 1}"])
    writer.close()

    stored = len(limited.query("SELECT * FROM spans", DB))
    assert stored == 50
    assert len(limited.query('SELECT * FROM "tts.requests"', DB)) == 8  # metrics unaffected
    assert dict(writer.health()) == {
        "sent": 50 + 8,
        "dropped": 30,
        "spooled": 0,
        "spool_bytes": 0,
        "spool_limit_bytes": writer.settings.spool_bytes,
    }
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    for fix in (
        "max-values-per-tag = 0",
        "max-series-per-database = 0",
        'index-version = "tsi1"',
        "retention policy",
    ):
        assert fix in message

    monkeypatch.setenv(URL, limited.url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_DB", DB)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_USERNAME", InfluxServer.USER)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_PASSWORD", InfluxServer.PASSWORD)
    cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "warn span storage" in out
    assert "max-values-per-tag = 50" in out
    assert "max-values-per-tag = 0" in out


# --- item 8: fork during an export ------------------------------------------
def test_a_child_forked_during_a_hung_export_does_not_wait_for_the_parents_lock(
    server: InfluxServer,
) -> None:
    writer = InfluxWriter(
        influx_settings(environ={}, **_settings(server, timeout_s=1.0, export_deadline_s=1.0))
    )
    server.hang()
    in_flight = threading.Thread(target=writer.write, args=(["m f=1i 1"],))
    in_flight.start()
    time.sleep(0.3)  # the parent's thread now holds the writer in a write that will time out
    pid = os.fork()
    if pid == 0:  # the child: export and shut down, as a forked worker does
        try:
            writer._pause_until = 0.0
            writer.write(["m f=2i 2"])
            writer.close()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.1)
    finished = time.monotonic() < deadline
    if not finished:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    server.resume()
    in_flight.join()
    writer.close()
    assert finished, "the forked child hung on the writer's lock"


# --- item 16: what counts as unreachable on the v2 API ------------------------
def test_v2_a_programming_error_is_dropped_and_logged_once_not_spooled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = influx_settings(
        environ={}, url=f"http://127.0.0.1:{free_port()}", org="o", bucket="b", token="t"
    )
    refused = InfluxWriter(settings)
    assert not refused.write(["m f=1i 1"])
    assert dict(refused.health())["spooled"] == 1  # nothing listens: kept for later

    broken = InfluxWriter(settings)

    def bug(*args: object, **kwargs: object) -> None:
        raise TypeError("unexpected keyword argument")

    monkeypatch.setattr(broken._transport._api, "write", bug)  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        assert not broken.write(["m f=1i 1"])
        assert not broken.write(["m f=1i 2"])
    assert dict(broken.health()) == {
        "sent": 0,
        "dropped": 2,
        "spooled": 0,
        "spool_bytes": 0,
        "spool_limit_bytes": broken.settings.spool_bytes,
    }
    assert len([r for r in caplog.records if "TypeError" in r.getMessage()]) == 1
    refused.close()
    broken.close()


# --- item 15: doctor on a certificate it cannot verify -------------------------
class _Ping(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_doctor_names_the_tls_fix_for_an_untrusted_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    endpoint = HTTPServer(("127.0.0.1", 0), _Ping)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    endpoint.socket = context.wrap_socket(endpoint.socket, server_side=True)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(URL, f"https://127.0.0.1:{endpoint.server_port}")
        assert cli.main(["doctor"]) == 1
    finally:
        endpoint.shutdown()
    out = capsys.readouterr().out
    assert "FAIL reachable" in out
    assert "certificate" in out
    assert "start InfluxDB" not in out
    assert "SSL_CERT_FILE" in out


def test_the_paths_users_may_have_imported_still_work() -> None:
    """The SDK's entry points and ``tts_otel.exporters.influxdb``'s names from before
    it became a package."""
    from importlib.metadata import entry_points

    import tts_otel.exporters.influxdb as package
    from tts_otel.exporters.influxdb import settings

    loaded = {
        group: next(e for e in entry_points(group=group) if e.name == "influxdb").load()
        for group in ("opentelemetry_traces_exporter", "opentelemetry_metrics_exporter")
    }
    assert loaded["opentelemetry_traces_exporter"] is InfluxDBSpanExporter
    assert loaded["opentelemetry_metrics_exporter"] is InfluxDBMetricExporter
    assert package.influxdb_exporter is influxdb_exporter
    assert package.influx_settings is settings.influx_settings is influx_settings
    assert package.InfluxSettings is settings.InfluxSettings
    assert package.InfluxWriter is InfluxWriter
