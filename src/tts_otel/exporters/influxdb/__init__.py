"""The direct InfluxDB exporter: spans and metrics in the collector's schema, without a collector.

One module per job: :mod:`.settings` (``TTS_OTEL_INFLUXDB_*``, checked once),
:mod:`.line_protocol` (pure rendering), :mod:`.transport` (one HTTP write and
what its answer means), :mod:`.spool` (where batches wait while the server is
away), :mod:`.writer` (retry, pause, spool, counts) and :mod:`.exporter` (the
SDK's span and metric exporters, and the ``influxdb`` exporter name).

The names below are the ones users may have imported from this path (the SDK
entry points name ``tts_otel.exporters.influxdb:InfluxDBSpanExporter``).
"""

from __future__ import annotations

from tts_otel.exporters.influxdb.exporter import (
    InfluxDBMetricExporter,
    InfluxDBSpanExporter,
    influxdb_exporter,
)
from tts_otel.exporters.influxdb.settings import (
    DEFAULT_SPAN_DIMENSIONS,
    DEFAULT_SPOOL_BYTES,
    InfluxSettings,
    influx_settings,
)
from tts_otel.exporters.influxdb.transport import RetryableError, UnreachableError
from tts_otel.exporters.influxdb.writer import InfluxWriter

__all__ = [
    "DEFAULT_SPAN_DIMENSIONS",
    "DEFAULT_SPOOL_BYTES",
    "InfluxDBMetricExporter",
    "InfluxDBSpanExporter",
    "InfluxSettings",
    "InfluxWriter",
    "RetryableError",
    "UnreachableError",
    "influx_settings",
    "influxdb_exporter",
]
