"""The default memory spool at shutdown, InfluxDB down or answering 500: what it
still holds ends with the process, and is counted as dropped, not left to vanish
(issue 20, item 2: 4,828 of 4,868 spooled points vanished with ``dropped=0``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import tts_otel
from tests.services import free_port
from tts_otel.telemetry import set_telemetry


class _Failing(BaseHTTPRequestHandler):
    """An InfluxDB that answers every write with 500 (its storage failing)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error":"engine: cache maximum memory size exceeded"}'
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("answer", ["down", "500"])
def test_what_the_memory_spool_holds_at_shutdown_is_counted_as_dropped(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, answer: str
) -> None:
    url = (
        f"http://127.0.0.1:{free_port()}"
        if answer == "down"
        else request.getfixturevalue("failing_url")
    )
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_URL", url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_EXPORT_DEADLINE", "0.5")
    # Spans alone (exporters named in code would send metrics too): their count is known.
    monkeypatch.setenv("TTS_OTEL_EXPORTERS", "influxdb")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    telemetry = tts_otel.configure(set_global=False, nvml=False, flush_on_signals=False)
    try:
        for _ in range(200):
            with tts_otel.synthesis(model="m", telemetry=telemetry) as req, req.stage("vocoder"):
                pass
        assert telemetry.force_flush() is False  # spooled, not delivered
        assert telemetry.exporter_health()["influxdb"]["spooled"] == 400
    finally:
        telemetry.shutdown()
        set_telemetry(None)
    health = telemetry.exporter_health()["influxdb"]
    assert (health["sent"], health["spooled"], health["dropped"]) == (0, 0, 400)
