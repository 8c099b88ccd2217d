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

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import grpc
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tts_otel.errors import ConfigurationError
from tts_otel.exporters.delivery import (
    PartialWriteError,
    PermanentError,
    RetryableError,
    SpoolingWriter,
    UnreachableError,
)
from tts_otel.exporters.parts import ExporterParts

if TYPE_CHECKING:
    from tts_otel.config import Settings

SPANS: Final = b"T"  # the first byte of a batch: the trace service's
METRICS: Final = b"M"  # the metrics service's
_GRPC_METHODS: Final = {
    SPANS: ("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ExportTraceServiceResponse.FromString),
    METRICS: ("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
              ExportMetricsServiceResponse.FromString),
}  # fmt: skip
# No answer in time is an absent collector, as a refused connection is: pause, do not retry.
_UNREACHABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def otlp_protocol(signal: str) -> str:
    """The signal's protocol variable, else the general one, as the OTel specification says."""
    variable = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    if variable not in os.environ:
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = os.environ.get(variable, "grpc")
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigurationError(
            variable, f"{protocol!r} is not supported", "use grpc or http/protobuf"
        )
    return protocol


class _Sender(Protocol):
    endpoint: str
    timeout_s: float

    def send(self, request: bytes) -> None:
        """One attempt; raise RetryableError, UnreachableError or PermanentError."""

    def close(self) -> None: ...


def _rejected(kind: bytes, response: Any) -> None:
    """A partial success: the collector kept the rest of the batch."""
    partial = response.partial_success
    dropped = partial.rejected_spans if kind == SPANS else partial.rejected_data_points
    if dropped:
        raise PartialWriteError(
            f"the collector rejected {dropped}: {partial.error_message}", dropped
        )


class _GrpcSender:
    """Through the channel of the SDK's gRPC exporter, which holds its configuration."""

    def __init__(self, exporter: Any, kind: bytes) -> None:
        self._exporter, self._kind = exporter, kind
        self.endpoint: str = exporter._endpoint
        self.timeout_s: float = exporter._timeout
        self._channel: object = None
        self._call: Callable[..., Any] | None = None

    def _export(self) -> Callable[..., Any]:
        channel = self._exporter._channel
        if self._call is None or channel is not self._channel:
            method, parse = _GRPC_METHODS[self._kind]
            # The request is already serialised: send its bytes as they are.
            self._call = channel.unary_unary(
                method, request_serializer=bytes, response_deserializer=parse
            )
            self._channel = channel
        return self._call

    def send(self, request: bytes) -> None:
        try:
            response = self._export()(
                request, metadata=self._exporter._headers, timeout=self.timeout_s
            )
        except grpc.RpcError as error:
            code = error.code()
            message = f"gRPC {code.name}: {error.details()}"
            if code in _UNREACHABLE:
                # As the SDK's exporter does: a new channel, not one in grpc's reconnect backoff
                # (which grows to minutes and outlasts a restarted collector).
                self._exporter._channel.close()
                self._exporter._initialize_channel_and_stub()
                raise UnreachableError(f"cannot reach the collector: {message}") from None
            if code in self._exporter._retryable_error_codes:
                raise RetryableError(message) from None
            raise PermanentError(message) from None
        _rejected(self._kind, response)

    def close(self) -> None:
        self._exporter.shutdown()


class _HttpSender:
    """Through the HTTP client of the SDK's OTLP/HTTP exporter (one request, no retries)."""

    def __init__(self, exporter: Any, kind: bytes) -> None:
        from opentelemetry.exporter.otlp.common.http import _extract_retry_after, _is_retryable

        self._exporter, self._kind = exporter, kind
        self._client = exporter._client
        self.endpoint: str = exporter._endpoint
        self.timeout_s: float = self._client._timeout
        self._retryable, self._retry_after = _is_retryable, _extract_retry_after
        self._parse = _GRPC_METHODS[kind][1]

    def send(self, request: bytes) -> None:
        client = self._client
        result = client._submit(client._compress(request), self.timeout_s)
        status = result.status_code
        if status is None:
            message = f"cannot reach the collector: {result.error}"
            if client._transport.is_connection_error(result.error):
                raise UnreachableError(message)
            raise RetryableError(message)
        if 200 <= status < 400:
            try:
                response = self._parse(result.content())
            except Exception:  # an empty or foreign body: it was taken all the same
                return
            _rejected(self._kind, response)
            return
        message = f"HTTP {status} {result.reason or ''}".strip()
        if self._retryable(status):
            raise RetryableError(message, self._retry_after(result))
        raise PermanentError(message)

    def close(self) -> None:
        self._exporter.shutdown()


class _OtlpTransport:
    """A spooled batch to its service, by its first byte."""

    def __init__(self, spans: _Sender, metrics: _Sender) -> None:
        self._senders = {SPANS: spans, METRICS: metrics}

    def write(self, body: bytes) -> None:
        sender = self._senders.get(body[:1])
        if sender is None:
            raise PermanentError("not an OTLP batch of this version")
        sender.send(body[1:])

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()


class OtlpWriter(SpoolingWriter):
    """The writer the OTLP span and metric exporters share."""

    def __init__(self, settings: Settings, spans: _Sender, metrics: _Sender) -> None:
        endpoints = dict.fromkeys([spans.endpoint, metrics.endpoint])
        super().__init__(
            _OtlpTransport(spans, metrics), _SpoolOf(settings),
            max(spans.timeout_s, metrics.timeout_s), backend="OTLP",
            target=" and ".join(endpoints), spool_suffix=".otlp",
            spool_setting="TTS_OTEL_OTLP_SPOOL_DIR",
        )  # fmt: skip


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


def _sdk_span_exporter() -> tuple[SpanExporter, _Sender]:
    if otlp_protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        grpc_exporter = OTLPSpanExporter()
        return grpc_exporter, _GrpcSender(grpc_exporter, SPANS)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    http_exporter = HttpSpanExporter()
    return http_exporter, _HttpSender(http_exporter, SPANS)


def _sdk_metric_exporter() -> tuple[MetricExporter, _Sender]:
    if otlp_protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        grpc_exporter = OTLPMetricExporter()
        return grpc_exporter, _GrpcSender(grpc_exporter, METRICS)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    http_exporter = HttpMetricExporter()
    return http_exporter, _HttpSender(http_exporter, METRICS)


def otlp_exporter(settings: Settings) -> ExporterParts:
    """The ``otlp`` exporter name: spans and metrics through one spooling writer, closed
    after both providers have made their last export."""
    span_sdk, span_sender = _sdk_span_exporter()
    metric_sdk, metric_sender = _sdk_metric_exporter()
    writer = OtlpWriter(settings, span_sender, metric_sender)
    return ExporterParts(
        span_exporter=OtlpSpanExporter(writer, span_sdk),
        metric_reader=PeriodicExportingMetricReader(OtlpMetricExporter(writer, metric_sdk)),
        close=writer.close,
        health=("otlp", writer.health),
    )
