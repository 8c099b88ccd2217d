"""InfluxWriter's outage behaviour, on a transport that goes down and comes back on command.

The server's side of the same behaviour (kill, restart, every span stored
once) runs on a real influxd in test_influxdb.py.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.fakes import prometheus_telemetry
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.exporters.influxdb.transport import RetryableError, UnreachableError, V1Transport
from tts_otel.exporters.influxdb.writer import InfluxWriter

REFUSED = UnreachableError("cannot reach InfluxDB: [Errno 111] Connection refused")


class SwitchableTransport:
    """Records what it was given while ``up``; raises ``error`` while down."""

    def __init__(self, error: RetryableError = REFUSED) -> None:
        self.error = error
        self.up = False
        self.calls = 0
        self.received: list[bytes] = []

    def write(self, body: bytes) -> None:
        self.calls += 1
        if not self.up:
            raise self.error
        self.received.append(body)

    def close(self) -> None:
        pass


@pytest.fixture
def transport() -> SwitchableTransport:
    return SwitchableTransport()


@pytest.fixture
def writer(transport: SwitchableTransport) -> InfluxWriter:
    settings = influx_settings(environ={}, export_deadline_s=0.05)
    return InfluxWriter(settings, transport)


def test_an_unreachable_server_is_left_alone_until_the_pause_ends(
    writer: InfluxWriter, transport: SwitchableTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(InfluxWriter, "BACKOFF_BASE_S", 0.1)  # a first pause of 0.1-0.2 s
    assert not writer.write(["m f=1i 1"])
    tried = transport.calls
    assert tried >= 1

    # Inside the pause: spooled without a network call, so the export takes no timeout.
    assert not writer.write(["m f=2i 2"])
    assert transport.calls == tried
    assert dict(writer.health())["spooled"] == 2

    transport.up = True
    time.sleep(0.25)
    assert writer.write(["m f=3i 3"])
    assert b"".join(transport.received).splitlines() == [b"m f=1i 1", b"m f=2i 2", b"m f=3i 3"]
    assert dict(writer.health()) == {
        "sent": 3,
        "dropped": 0,
        "spooled": 0,
        "spool_bytes": 0,
        "spool_limit_bytes": writer.settings.spool_bytes,
    }


def test_an_absent_server_costs_an_export_one_attempt_a_busy_one_retries() -> None:
    absent = SwitchableTransport()
    writer = InfluxWriter(influx_settings(environ={}, export_deadline_s=10.0), absent)
    assert not writer.write(["m f=1i 1"])
    # No retries inside the export: they would hold the SDK's thread while its queue fills.
    assert absent.calls == 1
    assert dict(writer.health())["spooled"] == 1

    busy = SwitchableTransport(RetryableError("HTTP 503: overloaded", retry_after=0.01))
    writer = InfluxWriter(influx_settings(environ={}, export_deadline_s=0.2), busy)
    assert not writer.write(["m f=1i 1"])
    assert busy.calls > 1


def test_pauses_grow_while_the_server_stays_down(
    writer: InfluxWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses = []
    for _ in range(5):
        monkeypatch.setattr(writer, "_pause_until", 0.0)  # let every export reach the server
        start = time.monotonic()
        writer.write(["m f=1i 1"])
        pauses.append(writer._pause_until - start)
    # Jitter draws from [longest/2, longest]; longest doubles each time up to BACKOFF_MAX_S.
    for count, pause in enumerate(pauses, start=1):
        longest = min(InfluxWriter.BACKOFF_MAX_S, InfluxWriter.BACKOFF_BASE_S * 2**count)
        assert longest / 2 <= pause <= longest + 0.1
    assert pauses[-1] > pauses[0]


def test_close_delivers_the_spool_once_more_and_counts_what_still_fails(
    writer: InfluxWriter, transport: SwitchableTransport
) -> None:
    writer.write(["m f=1i 1"])
    writer.write(["m f=2i 2"])
    transport.up = True
    writer.close()
    assert b"".join(transport.received).splitlines() == [b"m f=1i 1", b"m f=2i 2"]

    down = SwitchableTransport()
    stubborn = InfluxWriter(influx_settings(environ={}, export_deadline_s=5.0), down)
    stubborn.write(["m f=1i 1"])
    stubborn.write(["m f=2i 2"])
    before = down.calls
    started = time.monotonic()
    stubborn.close()
    # Shutdown does not back off and retry: one attempt. A memory spool ends with the
    # process: what it held is counted as dropped, not left to vanish (issue 20, item 2).
    assert down.calls == before + 1
    assert time.monotonic() - started < 1.0
    health = dict(stubborn.health())
    assert (health["spooled"], health["dropped"]) == (0, 2)


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
def test_health_reports_what_the_spool_holds_against_its_bound(
    transport: SwitchableTransport, tmp_path: Path, on_disk: bool
) -> None:
    spool_dir = {"spool_dir": str(tmp_path)} if on_disk else {}
    settings = influx_settings(environ={}, export_deadline_s=0.05, spool_bytes=40, **spool_dir)
    writer = InfluxWriter(settings, transport)
    writer.write(["m f=1i 1", "m f=2i 2"])  # 18 bytes, spooled: nothing listens
    assert dict(writer.health()) == {
        "sent": 0,
        "dropped": 0,
        "spooled": 2,
        "spool_bytes": 18,
        "spool_limit_bytes": 40,
    }
    writer.write(["m f=3i 3", "m f=4i 4"])
    writer.write(["m f=5i 5"])  # 45 bytes in all: the oldest batch makes room
    assert dict(writer.health()) == {
        "sent": 0,
        "dropped": 2,
        "spooled": 3,
        "spool_bytes": 27,
        "spool_limit_bytes": 40,
    }


def test_the_spool_is_exported_as_gauges_beside_the_sent_and_dropped_counter(
    writer: InfluxWriter,
) -> None:
    writer.write(["m f=1i 1", "m f=2i 2"])
    telemetry, scrape = prometheus_telemetry(health=[("influxdb", writer.health)])
    try:
        samples = scrape()
    finally:
        telemetry.shutdown()
    exporter = {"tts_exporter": "influxdb"}
    # The names alerts/tts-alerts.yml reads, as OpenTelemetry's Prometheus exporter writes them.
    assert samples["tts_exporter_points_total"] == [
        ({**exporter, "tts_exporter_outcome": "sent"}, 0.0),
        ({**exporter, "tts_exporter_outcome": "dropped"}, 0.0),
    ]  # a level that can fall is no counter: "spooled" is gone from it
    assert samples["tts_exporter_spool_points"] == [(exporter, 2.0)]
    assert samples["tts_exporter_spool_usage_bytes"] == [(exporter, 18.0)]
    assert samples["tts_exporter_spool_limit_bytes"] == [
        (exporter, float(writer.settings.spool_bytes))
    ]


# --- the v1 transport's connection --------------------------------------------
class _Write(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: ClassVar[list[tuple[tuple[str, int], str, bytes]]] = []
    hang_up = False  # close each connection after answering, without saying so

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.client_address, self.path, gzip.decompress(body)))
        self.send_response(204)
        self.end_headers()
        self.close_connection = self.hang_up

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[ThreadingHTTPServer]:
    _Write.seen, _Write.hang_up = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Write)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _v1(url: str) -> V1Transport:
    return V1Transport(influx_settings(environ={}, url=url, database="tts"))


def test_v1_writes_share_one_connection(endpoint: ThreadingHTTPServer) -> None:
    transport = _v1(f"http://127.0.0.1:{endpoint.server_port}")
    for index in range(3):
        transport.write(f"m f={index}i {index}\n".encode())
    transport.close()
    assert [body for _, _, body in _Write.seen] == [b"m f=0i 0\n", b"m f=1i 1\n", b"m f=2i 2\n"]
    assert len({client for client, _, _ in _Write.seen}) == 1
    assert {path for _, path, _ in _Write.seen} == {"/write?db=tts&precision=ns"}


def test_a_connection_the_server_closed_while_idle_is_replaced_at_once(
    endpoint: ThreadingHTTPServer,
) -> None:
    _Write.hang_up = True
    transport = _v1(f"http://127.0.0.1:{endpoint.server_port}")
    for index in range(3):
        transport.write(f"m f={index}i {index}\n".encode())
        time.sleep(0.05)  # the server's close arrives before the next write
    transport.close()
    assert len(_Write.seen) == 3
    assert len({client for client, _, _ in _Write.seen}) == 3


def test_v1_goes_through_the_proxy_urllib_would_use(
    endpoint: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{endpoint.server_port}")
    transport = _v1("http://influxdb.invalid:8086")
    transport.write(b"m f=1i 1\n")
    transport.close()
    assert [path for _, path, _ in _Write.seen] == [
        "http://influxdb.invalid:8086/write?db=tts&precision=ns"
    ]
