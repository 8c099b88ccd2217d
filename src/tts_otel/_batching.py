"""The SDK's BatchSpanProcessor, with the spans its queue drops counted.

When an exporter blocks longer than spans arrive, the SDK's queue drops
spans. The SDK counts them only with ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``,
which also counts every span started and ended (a bare span went from 9 to
28 µs). Here the SDK's own drop report is intercepted instead: it is called
only when a span is dropped, so a kept span costs nothing extra.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_log = logging.getLogger(__name__)


class _DropCounter:
    """Stands in for the SDK processor's metrics object: counts drops, forwards every call."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self._lock = threading.Lock()  # taken only when a span is dropped
        self.dropped = 0

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)  # type: ignore[attr-defined]

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        with self._lock:
            self.dropped += count
        self._inner.drop_items(count, error_type)  # type: ignore[attr-defined]

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)  # type: ignore[attr-defined]


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor whose ``dropped()`` is the number of spans it could not queue."""

    def __init__(self, exporter: SpanExporter, *, meter_provider: MeterProvider) -> None:
        super().__init__(exporter, meter_provider=meter_provider)
        # Private SDK attributes (1.41 to at least 1.45); tests/test_configure.py pins
        # this. Where they are missing, spans still flow; only the count is lost.
        batch = getattr(self, "_batch_processor", None)
        inner = getattr(batch, "_metrics", None)
        self._counter: _DropCounter | None = None
        if inner is None:
            _log.warning("tts-otel: this SDK version hides its span queue; drops go uncounted")
            return
        self._counter = _DropCounter(inner)
        batch._metrics = self._counter  # type: ignore[union-attr]

    def dropped(self) -> int:
        return 0 if self._counter is None else self._counter.dropped
