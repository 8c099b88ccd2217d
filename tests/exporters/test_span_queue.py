"""The SDK's span queue overflowing behind a slow exporter: exported plus counted
dropped is exactly the spans made (issue 20, item 3: it was made + 18 at 40,000)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tts_otel import semconv
from tts_otel.telemetry import Telemetry, set_telemetry
from tts_otel.testing import TelemetryCapture


class _SlowExporter(SpanExporter):
    """Takes a while per batch, as a backend answering slowly does; counts what it got."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.exported = seconds, 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        time.sleep(self.seconds)
        with self._lock:
            self.exported += len(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture
def _racy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A small queue, small batches and a thread switch every microsecond: the SDK's
    # "is the queue full?" check and its append are apart often enough to be seen.
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "1")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)
    set_telemetry(None)


def _dropped(telemetry: Telemetry, reader: InMemoryMetricReader) -> float:
    capture = TelemetryCapture(telemetry, InMemorySpanExporter(), reader)
    return capture.counter(
        semconv.METRIC_TELEMETRY_DROPPED, {semconv.ATTR_TELEMETRY_SIGNAL: "spans"}
    )


@pytest.mark.usefixtures("_racy")
def test_exported_plus_dropped_is_exactly_the_spans_made_when_the_queue_overflows() -> None:
    exporter, reader = _SlowExporter(0.0005), InMemoryMetricReader()
    telemetry = tts_otel.configure(
        exporters=[exporter, reader], set_global=False, nvml=False, flush_on_signals=False
    )
    threads, per_thread = 4, 5000

    def make() -> None:
        for _ in range(per_thread):
            telemetry.tracer.start_span("s").end()

    workers = [threading.Thread(target=make) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    telemetry.force_flush()  # the queue is empty after it: exported or dropped, nothing between
    dropped = _dropped(telemetry, reader)
    made = threads * per_thread
    assert dropped > 0  # the queue did overflow
    assert exporter.exported + dropped == made
    telemetry.shutdown()


@pytest.mark.usefixtures("_racy")
def test_spans_left_in_the_queue_when_shutdown_gives_up_are_counted() -> None:
    exporter, reader = _SlowExporter(0.2), InMemoryMetricReader()
    telemetry = tts_otel.configure(
        exporters=[exporter, reader], set_global=False, nvml=False, flush_on_signals=False
    )
    for _ in range(64):
        telemetry.tracer.start_span("s").end()
    provider = telemetry.tracer_provider
    processor = provider._active_span_processor._span_processors[0]  # type: ignore[attr-defined]
    # The SDK waits 30 s for its worker; shorter here: it cannot export 64 spans in 50 ms.
    processor._batch_processor.shutdown(timeout_millis=50)
    processor.shutdown()
    time.sleep(0.5)  # the export in flight ends
    assert exporter.exported + processor.dropped() == 64
    telemetry.shutdown()
