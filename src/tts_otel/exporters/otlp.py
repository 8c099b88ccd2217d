"""The ``otlp`` exporter name: OTLP to a collector that may be away for minutes.

The SDK's OTLP exporters retry within their timeout, then return FAILURE and
the batch is gone, uncounted: a collector down for 60 s lost 6,459 of 9,000
spans. Here each batch is encoded once, with the OTLP encoders the SDK's
exporters use, into the bytes of its protobuf request, and handed to the
shared delivery (:mod:`tts_otel.exporters.delivery`): sent at once, or
spooled (memory, or ``TTS_OTEL_OTLP_SPOOL_DIR``, which survives a restart),
replayed oldest first when the collector answers, and every point that is
finally lost counted. The SDK's exporters are still built, from the standard
``OTEL_EXPORTER_OTLP_*`` variables, and lend their configured connection
(endpoint, TLS, headers, compression, timeout): one request per attempt
goes through it, and the retries, pause and spool are the delivery's.
Spans and metric points share one writer and one spool (one bound); the
first byte of a spooled batch says which service it goes to.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

# The protocol variables are rows of the settings table (config.SdkSettings): empty is unset.
from tts_otel.config import load_sdk_settings, otlp_protocol
from tts_otel.exporters.delivery import SpoolingWriter
from tts_otel.exporters.otlp_transport import (
    METRICS,
    SPANS,
    GrpcSender,
    HttpSender,
    OtlpTransport,
    Sender,
)
from tts_otel.exporters.parts import ExporterParts

if TYPE_CHECKING:
    from tts_otel.config import Settings


class OtlpWriter(SpoolingWriter):
    """The writer the OTLP span and metric exporters share."""

    def __init__(self, settings: Settings, spans: Sender, metrics: Sender) -> None:
        endpoints = dict.fromkeys([spans.endpoint, metrics.endpoint])
        super().__init__(
            OtlpTransport(spans, metrics),
            _SpoolOf(settings),
            max(spans.timeout_s, metrics.timeout_s),
            backend="OTLP",
            target=" and ".join(endpoints),
            spool_suffix=".otlp",
            spool_setting="TTS_OTEL_OTLP_SPOOL_DIR",
        )


class _SpoolOf:
    """The OTLP spool's settings under the names the delivery reads."""

    def __init__(self, settings: Settings) -> None:
        self.spool_dir = settings.otlp_spool_dir
        self.spool_bytes = settings.otlp_spool_bytes


class OtlpSpanExporter(SpanExporter):
    """Spans as OTLP requests through ``writer``, which belongs to the caller."""

    def __init__(self, writer: OtlpWriter, sdk_exporter: SpanExporter) -> None:
        self._writer = writer
        self.sdk_exporter = sdk_exporter  # the configured SDK exporter whose connection is used

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = SPANS + encode_spans(spans).SerializeToString()
        ok = self._writer.deliver(body, len(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass  # the writer is closed after both providers' last export

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def data_points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )


class OtlpMetricExporter(MetricExporter):
    """Metric points as OTLP requests through ``writer``, with the temporality and
    aggregation the SDK's exporter took from ``OTEL_EXPORTER_OTLP_METRICS_*``."""

    def __init__(self, writer: OtlpWriter, sdk_exporter: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=sdk_exporter._preferred_temporality,
            preferred_aggregation=sdk_exporter._preferred_aggregation,
        )
        self._writer = writer
        self.sdk_exporter = sdk_exporter

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        body = METRICS + encode_metrics(metrics_data).SerializeToString()
        ok = self._writer.deliver(body, data_points(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass  # the writer is closed after both providers' last export


_SDK_TIMEOUT_S = 10.0  # the SDK's default for OTEL_EXPORTER_OTLP_TIMEOUT


def _compression(name: str, grpc: bool) -> Any:
    """The SDK exporter's compression value for ``gzip``, ``deflate`` or ``none``."""
    if not grpc:
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

        return HttpCompression(name)
    from grpc import Compression

    return {"gzip": Compression.Gzip, "deflate": Compression.Deflate}.get(
        name, Compression.NoCompression
    )


def _sdk_exporter(signal: str, kind: bytes) -> tuple[Any, Sender]:
    """The SDK's exporter of ``signal`` for its protocol, and a sender through it."""
    grpc = otlp_protocol(signal) == "grpc"
    package = "grpc" if grpc else "http"
    name = ("trace", "OTLPSpanExporter") if kind == SPANS else ("metric", "OTLPMetricExporter")
    module = importlib.import_module(
        f"opentelemetry.exporter.otlp.proto.{package}.{name[0]}_exporter"
    )
    # Given, so the SDK does not read these variables itself: it raised a bare error for
    # an empty one, which the settings table (checked in configure()) reads as unset.
    sdk = load_sdk_settings(lenient=True)
    spans = kind == SPANS
    timeout = (sdk.traces_timeout if spans else sdk.metrics_timeout) or _SDK_TIMEOUT_S
    compression = (sdk.traces_compression if spans else sdk.metrics_compression) or "none"
    with _empty_as_unset("OTEL_EXPORTER_OTLP_"):
        exporter = getattr(module, name[1])(
            timeout=timeout, compression=_compression(compression, grpc)
        )
    return exporter, GrpcSender(exporter, kind) if grpc else HttpSender(exporter, kind)


@contextlib.contextmanager
def _empty_as_unset(prefix: str) -> Iterator[None]:
    """The variables under ``prefix`` that are set but empty, hidden while the SDK's
    exporter is built: it reads some whatever it is given (the gRPC exporters' per-signal
    timeouts, ``float("")``), and empty means unset, as the settings table reads them."""
    empty = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(prefix) and not value.strip()
    }
    for name in empty:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(empty)


def otlp_exporter(settings: Settings) -> ExporterParts:
    """The ``otlp`` exporter name: spans and metrics through one spooling writer, closed
    after both providers have made their last export."""
    span_sdk, span_sender = _sdk_exporter("TRACES", SPANS)
    metric_sdk, metric_sender = _sdk_exporter("METRICS", METRICS)
    writer = OtlpWriter(settings, span_sender, metric_sender)
    return ExporterParts(
        span_exporter=OtlpSpanExporter(writer, span_sdk),
        metric_reader=PeriodicExportingMetricReader(OtlpMetricExporter(writer, metric_sdk)),
        close=writer.close,
        health=("otlp", writer.health),
    )
