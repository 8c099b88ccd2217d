"""One attempt to send an encoded OTLP request to the collector, and what its answer
means to the delivery: sent, partly rejected, retry later, unreachable, or refused.

Each sender goes through the connection of the SDK's own exporter (channel or HTTP
client), which holds its configuration from ``OTEL_EXPORTER_OTLP_*``: the request
bytes are sent as they are, so a spooled batch needs no decoding to be replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

import grpc
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tts_otel.exporters.delivery import (
    PartialWriteError,
    PermanentError,
    RetryableError,
    UnreachableError,
)

SPANS: Final = b"T"  # the first byte of a batch: the trace service's
METRICS: Final = b"M"  # the metrics service's
_GRPC_METHODS: Final = {
    SPANS: (
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        ExportTraceServiceResponse.FromString,
    ),
    METRICS: (
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        ExportMetricsServiceResponse.FromString,
    ),
}
# No answer in time is an absent collector, as a refused connection is: pause, do not retry.
_UNREACHABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class Sender(Protocol):
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


def _retry_after(error: grpc.RpcError) -> float | None:
    """The delay a gRPC error's RetryInfo asks for, if it has one."""
    found = dict(error.trailing_metadata() or ()).get("google.rpc.retryinfo-bin")
    if found is None:
        return None
    info = RetryInfo.FromString(found)
    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)


class GrpcSender:
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
            raise self._meaning(error) from None
        _rejected(self._kind, response)

    def _meaning(self, error: grpc.RpcError) -> Exception:
        code = error.code()
        message = f"gRPC {code.name}: {error.details()}"
        if code in _UNREACHABLE:
            # As the SDK's exporter does: a new channel, not one in grpc's reconnect backoff
            # (which grows to minutes and outlasts a restarted collector).
            self._exporter._channel.close()
            self._exporter._initialize_channel_and_stub()
            return UnreachableError(f"cannot reach the collector: {message}")
        retry_after = _retry_after(error)
        # OTLP: RESOURCE_EXHAUSTED is retried only when the server says when (RetryInfo).
        # A request over the server's size limit gets it without: kept, it would stay at
        # the head of the spool and hold every later batch behind it.
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is None:
            return PermanentError(message)
        if code in self._exporter._retryable_error_codes:
            return RetryableError(message, retry_after)
        return PermanentError(message)

    def close(self) -> None:
        self._exporter.shutdown()


class HttpSender:
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


class OtlpTransport:
    """A spooled batch to its service, by its first byte."""

    def __init__(self, spans: Sender, metrics: Sender) -> None:
        self._senders = {SPANS: spans, METRICS: metrics}

    def write(self, body: bytes) -> None:
        sender = self._senders.get(body[:1])
        if sender is None:
            raise PermanentError("not an OTLP batch of this version")
        sender.send(body[1:])

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
