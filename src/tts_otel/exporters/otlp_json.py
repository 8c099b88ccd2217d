"""Spans and metrics as OTLP JSON lines, one export request per line.

The format the collector's ``file`` exporter writes and its ``otlpjsonfile``
receiver reads: protobuf JSON with trace and span ids in lower-case hex.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
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

from tts_otel.config import Settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.parts import ExporterParts

_log = logging.getLogger(__name__)

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """Protobuf JSON writes bytes as base64; OTLP JSON wants ids as hex."""
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex() if key in _ID_KEYS else _hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(item) for item in node]
    return node


def to_otlp_json(message: Message) -> str:
    return json.dumps(_hex_ids(MessageToDict(message, use_integers_for_enums=True)))


class _JsonLines:
    """Appends lines to one file; an I/O error fails the export, never the caller."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def write(self, line: str) -> bool:
        try:
            with self._lock:
                if self._file is None:
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line + "\n")
                self._file.flush()
        except OSError as error:
            _log.warning("tts-otel: cannot write %s: %s", self.path, error)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self._lines = _JsonLines(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._lines.write(to_otlp_json(encode_spans(spans)))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._lines.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._lines = _JsonLines(path)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        ok = self._lines.write(to_otlp_json(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._lines.close()


def file_exporter(settings: Settings) -> ExporterParts:
    """The ``file`` exporter: OTLP JSON lines in ``output_dir``."""
    directory = settings.output_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            "TTS_OTEL_OUTPUT_DIR", f"cannot create {directory}: {error.strerror}",
            "point it at a writable directory",
        ) from error  # fmt: skip
    return ExporterParts(
        OtlpJsonSpanExporter(directory / "traces.jsonl"),
        PeriodicExportingMetricReader(OtlpJsonMetricExporter(directory / "metrics.jsonl")),
        where=f"file: {directory / 'traces.jsonl'} and {directory / 'metrics.jsonl'}",
    )
