"""The OTLP path through a real collector (otelcol-tts) that goes away: SIGKILLed under
load for 60 s and restarted on the same ports, or down from the start.

The collector here writes what it receives to its debug exporter, whose log line per
request (none sampled away) gives the spans and data points it took; those are counted
against what the service made. Nothing may be lost while the spool holds the outage; past its bound,
every point lost is counted (issue 20, item 1).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tests.services import Collector, collector_binary
from tts_otel import semconv
from tts_otel.exporters import otlp
from tts_otel.telemetry import Telemetry, set_telemetry
from tts_otel.testing import TelemetryCapture

DEBUG_CONFIG = """
extensions:
  health_check: {endpoint: "${env:OTELCOL_HEALTH_ENDPOINT}"}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "${env:OTELCOL_OTLP_GRPC_ENDPOINT}"}
      http: {endpoint: "${env:OTELCOL_OTLP_HTTP_ENDPOINT}"}
exporters:
  debug: {verbosity: basic}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
    metrics: {receivers: [otlp], exporters: [debug]}
  telemetry:
    metrics: {level: none}
    # The logger samples repeated lines by default (10 a second, then 1 in 100): a replay
    # of a spool is a burst of them, and every one must be there to be counted.
    logs: {sampling: {enabled: false}}
"""
_RECEIVED = re.compile(r'"(spans|data points)": (\d+)')
OUTAGE_S = 60.0
REQUESTS_PER_S = 25  # two spans each: about 3,500 spans over the 70 s of load


@pytest.fixture(autouse=True)
def _fast_export(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Metrics every second, so that the outage spans many metric exports too.
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1000")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    yield
    set_telemetry(None)


class _Made:
    """Metric points each OTLP exporter was handed, counted as they pass, by its endpoint."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._points: Counter[str] = Counter()
        export = otlp.OtlpMetricExporter.export

        def counted(exporter: otlp.OtlpMetricExporter, data: MetricsData, *a: Any, **k: Any) -> Any:
            self._points[exporter._writer._target] += otlp.data_points(data)
            return export(exporter, data, *a, **k)

        monkeypatch.setattr(otlp.OtlpMetricExporter, "export", counted)

    def points(self, service: _Service) -> int:
        return sum(n for target, n in self._points.items() if target.endswith(service.port))


class _Service:
    """One configured handle sending OTLP to one collector, with its own span count."""

    def __init__(
        self,
        collector: Collector,
        monkeypatch: pytest.MonkeyPatch,
        protocol: str = "grpc",
        **environ: str,
    ) -> None:
        self.collector = collector
        port = collector.grpc if protocol == "grpc" else collector.http
        self.port = f":{port}" if protocol == "grpc" else f":{port}/v1/metrics"
        with monkeypatch.context() as scoped:
            scoped.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
            scoped.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            for name, value in environ.items():
                scoped.setenv(name, value)
            self.spans = InMemorySpanExporter()
            self.reader = InMemoryMetricReader()
            self.telemetry: Telemetry = tts_otel.configure(
                exporters=["otlp", SimpleSpanProcessor(self.spans), self.reader],
                set_global=False,
                nvml=False,
                flush_on_signals=False,
            )

    def request(self) -> None:
        with tts_otel.synthesis(model="m", telemetry=self.telemetry) as req, req.stage("vocoder"):
            pass

    def health(self) -> dict[str, int]:
        return self.telemetry.exporter_health()["otlp"]

    def dropped(self, signal: str) -> float:
        capture = TelemetryCapture(self.telemetry, self.spans, self.reader)
        return capture.counter(
            semconv.METRIC_TELEMETRY_DROPPED, {semconv.ATTR_TELEMETRY_SIGNAL: signal}
        )


def received(collector: Collector) -> Counter[str]:
    """Spans and data points the collector's debug exporter logged as taken."""
    log = (collector.tmp / "collector.log").read_text(errors="replace")
    counts: Counter[str] = Counter()
    for kind, count in _RECEIVED.findall(log):
        counts[kind] += int(count)
    return counts


def _collector(tmp: Path, name: str) -> Collector:
    folder = tmp / name
    folder.mkdir()
    config = folder / "debug.yaml"
    config.write_text(DEBUG_CONFIG)
    return Collector(collector_binary(), config, folder)


def _load(services: list[_Service], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        for service in services:
            service.request()
        time.sleep(max(0.0, 1 / REQUESTS_PER_S - (time.monotonic() - started)))


def test_a_collector_killed_for_60_s_under_load_loses_nothing_or_counts_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _Made(monkeypatch)
    collectors = {name: _collector(tmp_path, name) for name in ("grpc", "http", "bound")}
    for collector in collectors.values():
        collector.start()
    services = {
        "grpc": _Service(collectors["grpc"], monkeypatch),  # the default: memory spool, 64 MiB
        "http": _Service(
            collectors["http"],
            monkeypatch,
            "http/protobuf",
            TTS_OTEL_OTLP_SPOOL_DIR=str(tmp_path / "spool"),
        ),
        # Past the bound: the outage makes several times what 64 KiB holds.
        "bound": _Service(collectors["bound"], monkeypatch, TTS_OTEL_OTLP_SPOOL_BYTES="65536"),
    }
    load = threading.Thread(target=_load, args=(list(services.values()), 5 + OUTAGE_S + 5))
    load.start()
    try:
        time.sleep(5)
        for collector in collectors.values():
            collector.kill()
        time.sleep(OUTAGE_S)
        for collector in collectors.values():
            collector.start()  # the same ports
    finally:
        load.join()
    figures = {}
    for name, service in services.items():
        spool_dropped = service.dropped("export")  # as a collection shows it, before shutdown
        service.telemetry.shutdown()
        health, spans = service.health(), len(service.spans.get_finished_spans())
        points = made.points(service)
        got = received(service.collector)
        figures[name] = (spans, points, got["spans"], got["data points"], health["dropped"])
        print(
            f"{name}: spans made {spans}, metric points made {points}; delivered "
            f"{got['spans']} spans, {got['data points']} points; counted dropped "
            f"{health['dropped']} (signal=export before shutdown: {spool_dropped})"
        )
        assert service.dropped("spans") == 0  # the SDK's queue never overflowed
        assert health["spooled"] == 0
        assert health["sent"] == got["spans"] + got["data points"]
        # Exact: every point made was delivered or counted as dropped.
        assert got["spans"] + got["data points"] + health["dropped"] == spans + points
        assert spool_dropped <= health["dropped"]
    for name in ("grpc", "http"):
        spans, points, got_spans, got_points, dropped = figures[name]
        assert (got_spans, got_points, dropped) == (spans, points, 0), name
        assert spans > 3000
    assert figures["bound"][4] > 0  # the bound was passed, and what it cost is counted
    for collector in collectors.values():
        collector.stop()


def test_a_collector_down_from_the_start_counts_every_point_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _Made(monkeypatch)
    collector = _collector(tmp_path, "never")  # its ports, never listened on
    service = _Service(collector, monkeypatch)
    for _ in range(250):
        service.request()
    # Not delivered: flushing says so.
    assert service.telemetry.force_flush() is False
    assert service.health()["spooled"] > 0
    service.telemetry.shutdown()
    health = service.health()
    spans, points = len(service.spans.get_finished_spans()), made.points(service)
    print(
        f"down from the start: {spans} spans and {points} metric points made, "
        f"{health['dropped']} counted dropped"
    )
    assert spans == 500
    assert (health["sent"], health["spooled"], health["dropped"]) == (0, 0, spans + points)


def test_a_disk_spool_keeps_an_outage_for_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _Made(monkeypatch)
    collector = _collector(tmp_path, "later")
    spool = {"TTS_OTEL_OTLP_SPOOL_DIR": str(tmp_path / "spool")}
    down = _Service(collector, monkeypatch, **spool)
    for _ in range(100):
        down.request()
    down.telemetry.shutdown()
    waiting = down.health()
    assert (waiting["sent"], waiting["dropped"]) == (0, 0)
    before = len(down.spans.get_finished_spans()) + made.points(down)
    assert waiting["spooled"] == before
    collector.start()
    try:
        up = _Service(collector, monkeypatch, **spool)  # a new process's handle, the same folder
        up.request()
        up.telemetry.shutdown()
        # Both handles send to one endpoint: its count holds both handles' points.
        total = len(down.spans.get_finished_spans()) + len(up.spans.get_finished_spans())
        total += made.points(up)
        got = received(collector)
        assert sum(got.values()) == total
        assert up.health()["sent"] == total
        assert up.health()["spooled"] == 0
        assert not list((tmp_path / "spool").glob("*.otlp"))
    finally:
        collector.stop()


def test_a_batch_the_collector_refuses_for_good_costs_its_spans_only_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gRPC answers a request over the collector's 4 MiB limit with RESOURCE_EXHAUSTED, which
    # OTLP retries only when the server sends RetryInfo. Kept and retried, that one batch sat
    # at the head of the spool and every later batch waited behind it, for good.
    collector = _collector(tmp_path, "strict")
    collector.start()
    try:
        service = _Service(collector, monkeypatch, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="10000000")
        huge = service.telemetry.tracer.start_span("huge")
        huge.set_attribute("payload", "x" * 5_000_000)
        huge.end()
        service.telemetry.force_flush()
        for _ in range(10):
            service.request()
        assert service.telemetry.force_flush() is True
        health = service.health()
        assert health["dropped"] == 1
        assert received(collector)["spans"] == 20
    finally:
        service.telemetry.shutdown()
        collector.stop()
