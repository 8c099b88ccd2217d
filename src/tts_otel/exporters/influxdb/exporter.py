"""The span and metric exporters, and the ``influxdb`` exporter name that builds both.

Batching is the SDK's (BatchSpanProcessor, PeriodicExportingMetricReader);
each export renders its batch as line protocol and hands it to an
:class:`~tts_otel.exporters.influxdb.writer.InfluxWriter`. Settings come from
arguments or ``TTS_OTEL_INFLUXDB_*`` variables; see :func:`influx_settings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tts_otel.config import Settings
from tts_otel.exporters.influxdb.metrics import metric_lines
from tts_otel.exporters.influxdb.settings import InfluxSettings, influx_settings
from tts_otel.exporters.influxdb.spans import span_lines
from tts_otel.exporters.influxdb.writer import InfluxWriter
from tts_otel.exporters.parts import ExporterParts


class InfluxDBSpanExporter(SpanExporter):
    """Spans to InfluxDB. No arguments: ``TTS_OTEL_INFLUXDB_*`` (the SDK entry point does that).

    A ``writer`` passed in belongs to the caller, who closes it.
    """

    def __init__(
        self, settings: InfluxSettings | None = None, *, writer: InfluxWriter | None = None
    ) -> None:
        self._owns_writer = writer is None
        self._writer = writer or InfluxWriter(settings or influx_settings())

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = list(span_lines(spans, self._writer.settings.span_dimensions))
        ok = self._writer.write(lines)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._owns_writer:
            self._writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class InfluxDBMetricExporter(MetricExporter):
    """Metrics to InfluxDB (telegraf-prometheus-v1). No arguments: ``TTS_OTEL_INFLUXDB_*``.

    A ``writer`` passed in belongs to the caller, who closes it.
    """

    def __init__(
        self, settings: InfluxSettings | None = None, *, writer: InfluxWriter | None = None
    ) -> None:
        super().__init__()
        self._owns_writer = writer is None
        self._writer = writer or InfluxWriter(settings or influx_settings())

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        lines = list(metric_lines(metrics_data, self._writer.refuse))
        ok = self._writer.write(lines)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._owns_writer:
            self._writer.close()


def influxdb_exporter(_settings: Settings) -> ExporterParts:
    """The ``influxdb`` exporter name: one writer for spans and metrics, closed after both
    providers have made their last export."""
    settings = influx_settings()
    writer = InfluxWriter(settings)
    return ExporterParts(
        span_exporter=InfluxDBSpanExporter(writer=writer),
        metric_reader=PeriodicExportingMetricReader(InfluxDBMetricExporter(writer=writer)),
        where=f"influxdb: {settings.target}",
        close=writer.close,
        health=("influxdb", writer.health),
    )
