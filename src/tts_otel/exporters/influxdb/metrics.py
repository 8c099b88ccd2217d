"""Metrics as InfluxDB points in the collector's ``telegraf-prometheus-v1`` schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)
from opentelemetry.trace import format_span_id, format_trace_id

from tts_otel.exporters.influxdb.line_protocol import (
    FieldValue,
    field_value,
    go_float,
    line,
    tag_value,
)

EXEMPLAR_SUFFIX: Final = "_exemplar"
Refused = Callable[[int, str], None]
"""Told (points, why) about points that cannot be written."""


def metric_lines(data: MetricsData, refused: Refused | None = None) -> Iterator[str]:
    """Points in the collector's ``telegraf-prometheus-v1`` metrics schema.

    ``refused`` hears of each point left without a storable field (NaN,
    infinite, or an integer outside int64).
    """
    for resource_metrics in data.resource_metrics:
        resource_tags = {k: tag_value(v) for k, v in resource_metrics.resource.attributes.items()}
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            base = dict(resource_tags)
            if scope.name:
                base["otel.library.name"] = scope.name
            if scope.version:
                base["otel.library.version"] = scope.version
            base.update({k: tag_value(v) for k, v in (scope.attributes or {}).items()})
            for metric in scope_metrics.metrics:
                yield from _metric(metric.name, metric.data, base, refused)


def _metric(
    name: str, data: Any, base: Mapping[str, str], refused: Refused | None
) -> Iterator[str]:
    counter = (
        isinstance(data, Sum)
        and data.is_monotonic
        and data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    )
    for point in data.data_points:
        tags = {**base, **{k: tag_value(v) for k, v in (point.attributes or {}).items()}}
        fields: dict[str, FieldValue] = {}
        if point.start_time_unix_nano:
            fields["start_time_unix_nano"] = int(point.start_time_unix_nano)
        if isinstance(data, Histogram):
            fields["count"] = float(point.count)
            fields["sum"] = float(point.sum)
            if point.count:
                fields["min"] = float(point.min)
                fields["max"] = float(point.max)
            cumulative = 0
            bounds = list(point.explicit_bounds)
            for index, bucket in enumerate(point.bucket_counts):
                cumulative += bucket
                key = go_float(bounds[index]) if index < len(bounds) else "+Inf"
                fields[key] = float(cumulative)
        elif isinstance(data, Sum | Gauge):
            fields["counter" if counter else "gauge"] = point.value
            if field_value(point.value) is None:  # the point without its value would be a lie
                fields.clear()
        else:
            continue
        rendered = line(name, tags, fields, point.time_unix_nano) if fields else None
        if rendered is not None:
            yield rendered
        elif refused is not None:
            refused(1, f"{name}: no value InfluxDB can store (NaN, infinite, outside int64)")
        yield from _exemplar_lines(name, point)


def _exemplar_lines(name: str, point: Any) -> Iterator[str]:
    """``<name>_exemplar`` points: a measurement's value with the span it was taken in."""
    for exemplar in getattr(point, "exemplars", None) or ():
        if not exemplar.trace_id or not exemplar.span_id:
            continue
        tags = {k: tag_value(v) for k, v in (exemplar.filtered_attributes or {}).items()}
        tags["trace_id"] = format_trace_id(exemplar.trace_id)
        tags["span_id"] = format_span_id(exemplar.span_id)
        rendered = line(
            name + EXEMPLAR_SUFFIX, tags, {"gauge": exemplar.value}, exemplar.time_unix_nano
        )
        if rendered is not None:
            yield rendered
