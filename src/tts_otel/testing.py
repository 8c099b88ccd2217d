"""An in-memory harness for tests of code that uses tts-otel.

from tts_otel.testing import capture

with capture() as telemetry:
    run_my_pipeline()
    assert telemetry.spans_named("tts.vocoder")
    assert telemetry.histogram("tts.stage.duration", {"tts.stage": "vocoder"}).count == 1
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

from tts_otel._bootstrap import configure
from tts_otel.config import exporter_names
from tts_otel.telemetry import Telemetry, get_telemetry, set_telemetry


class _HasAttributes(Protocol):
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...


def attributes(item: _HasAttributes) -> dict[str, Any]:
    """Attributes of a span or data point as a plain dict (empty when it has none)."""
    return dict(item.attributes or {})


def span_seconds(span: ReadableSpan) -> float:
    """Duration of a finished span in seconds."""
    if span.start_time is None or span.end_time is None:
        raise ValueError(f"span {span.name} has not ended")
    return (span.end_time - span.start_time) / 1e9


@dataclass(frozen=True)
class HistogramTotal:
    """Matching histogram points added together."""

    count: int
    sum: float
    bucket_counts: tuple[int, ...]
    explicit_bounds: tuple[float, ...]


class TelemetryCapture:
    def __init__(
        self, telemetry: Telemetry, spans: InMemorySpanExporter, reader: InMemoryMetricReader
    ):
        self.telemetry = telemetry
        self._spans = spans
        self._reader = reader

    # --- spans ----------------------------------------------------------------
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self._spans.get_finished_spans())

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        parent_id = parent.context.span_id if parent.context else None
        return [s for s in self.spans() if s.parent is not None and s.parent.span_id == parent_id]

    def clear_spans(self) -> None:
        self._spans.clear()

    # --- metrics --------------------------------------------------------------
    def metrics_data(self) -> MetricsData | None:
        """Collect now: the SDK's metrics data, as an exporter would receive it."""
        return self._reader.get_metrics_data()

    def metrics(self) -> dict[str, Metric]:
        """Collect now; metric name -> metric (cumulative since the start)."""
        data = self.metrics_data()
        found: dict[str, Metric] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found[metric.name] = metric
        return found

    def points(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> list[Any]:
        """Data points of ``name`` whose attributes include ``attributes``."""
        metric = self.metrics().get(name)
        if metric is None:
            return []
        wanted = dict(attributes or {})
        return [
            point
            for point in metric.data.data_points
            if all((point.attributes or {}).get(k) == v for k, v in wanted.items())
        ]

    def histogram(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> HistogramTotal:
        points: list[HistogramDataPoint] = self.points(name, attributes)
        if not points:
            return HistogramTotal(0, 0.0, (), ())
        buckets = [0] * len(points[0].bucket_counts)
        for point in points:
            buckets = [a + b for a, b in zip(buckets, point.bucket_counts, strict=True)]
        return HistogramTotal(
            count=sum(p.count for p in points),
            sum=sum(p.sum for p in points),
            bucket_counts=tuple(buckets),
            explicit_bounds=tuple(points[0].explicit_bounds),
        )

    def counter(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> float:
        points: list[NumberDataPoint] = self.points(name, attributes)
        return sum(point.value for point in points)


@contextmanager
def capture(**settings: Any) -> Iterator[TelemetryCapture]:
    """Make an in-memory tts-otel the active one for the block; restore the previous after.

    Keyword arguments go to :func:`tts_otel.configure`. By default the GPU
    seams are off (``cuda=None``, ``nvml=False``; pass fakes to test them), and
    so is the flush on signals, so that Ctrl-C stays the test runner's.
    """
    previous = get_telemetry()
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    settings.setdefault("cuda", None)
    settings.setdefault("nvml", False)
    settings.setdefault("flush_on_signals", False)
    extra = settings.pop("exporters", [])
    if isinstance(extra, str):  # names, as configure() takes them: "console,file"
        extra = list(exporter_names(extra))
    telemetry = configure(
        exporters=[SimpleSpanProcessor(spans), reader, *extra], set_global=False, **settings
    )
    try:
        yield TelemetryCapture(telemetry, spans, reader)
    finally:
        telemetry.shutdown()
        set_telemetry(previous)
