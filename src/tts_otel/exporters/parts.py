"""What an exporter name resolves to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace.export import SpanExporter


@dataclass(frozen=True, eq=False)
class ExporterParts:
    """A span exporter and/or a metric reader, where the data goes (for people),
    and what to close at shutdown beyond the SDK parts (a server socket)."""

    span_exporter: SpanExporter | None = None
    metric_reader: MetricReader | None = None
    where: str = ""
    close: Callable[[], None] | None = None
    # (exporter name, () -> (key, value) pairs): counts sent, dropped; levels spooled (points),
    # spool_bytes, spool_limit_bytes. Telemetry exports the first as a counter, the rest gauges.
    health: tuple[str, Callable[[], Iterable[tuple[str, int]]]] | None = None
