"""Spans and metrics as OTLP JSON lines, one export request per line.

The format the collector's ``file`` exporter writes and its ``otlpjsonfile``
receiver reads: protobuf JSON with trace and span ids in lower-case hex.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

from tts_otel._fork import reset_after_fork
from tts_otel.config import DEFAULT_OUTPUT_MODE, Settings
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
    """Appends lines to one file; an I/O error fails the export, never the caller.

    Each line is one ``write(2)`` on an ``O_APPEND`` descriptor, without a buffer: a
    child forked mid-write copies no half-written line to write again, and lines from
    a parent and its forked children, which share the descriptor, never interleave.
    A new file gets ``mode`` exactly (the umask does not narrow or widen a choice).
    """

    def __init__(self, path: Path, mode: int = DEFAULT_OUTPUT_MODE) -> None:
        self.path = path
        self._mode = mode
        self._fd: int | None = None
        self._lock = threading.Lock()
        # A child forked while the parent's export held the lock would wait for it
        # forever (at its exit, in shutdown()).
        reset_after_fork(self, _JsonLines._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def write(self, line: str) -> bool:
        data = memoryview((line + "\n").encode())
        try:
            with self._lock:
                if self._fd is None:
                    self._fd = _open_for_append(self.path, self._mode)
                while data:
                    data = data[os.write(self._fd, data) :]
        except OSError as error:
            _log.warning("tts-otel: cannot write %s: %s", self.path, error)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _open_for_append(path: Path, mode: int) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, flags)  # the owner's file: its mode stays as it is
    os.fchmod(fd, mode)
    return fd


def folder_mode(file_mode: int) -> int:
    """Folders to hold files of ``file_mode``: searchable by whoever may read them."""
    return file_mode | (file_mode & 0o444) >> 2


def make_folders(directory: Path, mode: int) -> None:
    """``directory`` and its missing parents, each created with ``mode`` exactly
    (``Path.mkdir(parents=True)`` gives the parents the umask's default)."""
    missing = []
    folder = directory.absolute()
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made meanwhile by someone else: theirs, mode and all
        os.chmod(folder, mode)


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, path: Path, mode: int = DEFAULT_OUTPUT_MODE) -> None:
        self._lines = _JsonLines(path, mode)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._lines.write(to_otlp_json(encode_spans(spans)))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._lines.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, path: Path, mode: int = DEFAULT_OUTPUT_MODE) -> None:
        super().__init__()
        self._lines = _JsonLines(path, mode)

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
    """The ``file`` exporter: OTLP JSON lines in ``output_dir``, new files and folders
    with ``output_mode`` (owner-only by default: spans may hold the input text)."""
    directory, mode = settings.output_dir, settings.output_mode
    try:
        make_folders(directory, folder_mode(mode))
    except OSError as error:
        raise ConfigurationError(
            "TTS_OTEL_OUTPUT_DIR",
            f"cannot create {directory}: {error.strerror}",
            "point it at a writable directory",
        ) from error
    return ExporterParts(
        OtlpJsonSpanExporter(directory / "traces.jsonl", mode),
        PeriodicExportingMetricReader(OtlpJsonMetricExporter(directory / "metrics.jsonl", mode)),
        where=f"file: {directory / 'traces.jsonl'} and {directory / 'metrics.jsonl'}",
    )
