"""The SDK's BatchSpanProcessor, with every span it loses counted, exactly.

When an exporter blocks longer than spans arrive, the SDK's queue drops
spans. The SDK counts them only with ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``,
which also counts every span started and ended (a bare span went from 9 to
28 µs). And its count is not exact: it asks "is the queue full?", then
appends, which evicts the oldest span if the queue is full *then*. Threads
ending spans and the worker taking a batch run between the two steps, so a
span was counted as dropped that was not (the worker had made room), or one
was evicted uncounted (two threads both saw room for one): 40,000 requests
gave exported + dropped = made + 18. So the queue is replaced by one that
counts what it evicts, as it evicts it, under a lock its pops take too (one
uncontended lock per span, well under a microsecond). The SDK's own drop
report still serves the spans it refuses after shutdown. Spans still queued
when shutdown gives up waiting for the exporter are counted too.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from tts_otel._fork import reset_after_fork

_log = logging.getLogger(__name__)


class _CountingQueue(collections.deque[ReadableSpan]):
    """The SDK's bounded queue (it appends on the left and pops on the right), counting
    each span an append evicts."""

    def __init__(self, maxlen: int) -> None:
        super().__init__((), maxlen)
        self.lock = threading.Lock()
        self.evicted = 0

    def appendleft(self, span: ReadableSpan, /) -> None:
        with self.lock:
            if len(self) == self.maxlen:
                self.evicted += 1
            super().appendleft(span)

    def pop(self) -> ReadableSpan:  # type: ignore[override]  # deque's pop takes no index
        with self.lock:
            return super().pop()

    def discard(self) -> int:
        """Empty the queue; how many spans it held."""
        with self.lock:
            held = len(self)
            self.clear()
            return held


class _DropCounter:
    """Stands in for the SDK processor's metrics object: counts the drops the queue does
    not see (spans ended after shutdown), forwards every call."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self._lock = threading.Lock()  # taken only when a span is dropped
        self.dropped = 0

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)  # type: ignore[attr-defined]

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        if error_type != "queue_full":  # the queue counts those itself, exactly
            with self._lock:
                self.dropped += count
        self._inner.drop_items(count, error_type)  # type: ignore[attr-defined]

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)  # type: ignore[attr-defined]


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor whose ``dropped()`` is the number of spans it lost: evicted
    from a full queue, refused after shutdown, or still queued when shutdown ended."""

    def __init__(self, exporter: SpanExporter, *, meter_provider: MeterProvider) -> None:
        super().__init__(exporter, meter_provider=meter_provider)
        # Private SDK attributes (1.41 to at least 1.45); tests/test_configure.py pins
        # this. Where they are missing, spans still flow; only the count is lost.
        batch = getattr(self, "_batch_processor", None)
        inner = getattr(batch, "_metrics", None)
        queue = getattr(batch, "_queue", None)
        self._counter: _DropCounter | None = None
        self._queue: _CountingQueue | None = None
        self._left_at_shutdown = 0
        if inner is None or not isinstance(queue, collections.deque) or queue.maxlen is None:
            _log.warning("tts-otel: this SDK version hides its span queue; drops go uncounted")
            return
        self._counter = _DropCounter(inner)
        batch._metrics = self._counter  # type: ignore[union-attr]
        # Empty still: the processor is not on a provider yet, so no span can be in it.
        self._queue = _CountingQueue(queue.maxlen)
        batch._queue = self._queue  # type: ignore[union-attr]
        # A lock a thread of the parent held at a fork is never released in the child.
        reset_after_fork(self, CountingBatchSpanProcessor._after_fork)

    def _after_fork(self) -> None:
        # The child's own losses from here on: the parent's stay the parent's to report.
        self._left_at_shutdown = 0
        if self._counter is not None:
            self._counter.dropped = 0
        if self._queue is not None:
            self._queue.lock = threading.Lock()
            self._queue.evicted = 0

    def shutdown(self) -> None:
        super().shutdown()  # type: ignore[no-untyped-call]
        if self._queue is not None:
            # The worker gave up (its exporter outlasted the timeout): these never leave.
            self._left_at_shutdown += self._queue.discard()

    def dropped(self) -> int:
        if self._counter is None or self._queue is None:
            return 0
        return self._counter.dropped + self._queue.evicted + self._left_at_shutdown
