"""Measurements wait here, off the request path, to be recorded into the SDK.

Recording into the SDK costs about 8 us per histogram record on this project's
2-core reference machine (attribute cleaning, hashing, exemplar sampling); a
request records ten or more. The request path only appends one batch to a
bounded deque. A tts-otel thread records the deque every DRAIN_INTERVAL_S,
and every collection first records what is left (:mod:`tts_otel._observers`),
so every collection still sees every request that finished before it.

Why a thread, not only the collection: Python runs one thread at a time, so
recording a whole export interval's backlog in one go stalls the requests
running meanwhile. With the reader recording alone, a 1 s export interval at
66 requests/s made 13 ms stalls (the SDK's default 60 s interval would make
them sixty times longer). benchmarks/collection_stall.py: p99 of 15 ms
reference requests 25-26 ms with the reader alone, 19-20 ms with the thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from tts_otel._fork import reset_after_fork

_log = logging.getLogger(__name__)

# `Histogram.record` and `Counter.add` share this signature.
RecordFn: TypeAlias = Callable[..., None]
Measurement: TypeAlias = tuple[RecordFn, float, Mapping[str, AttributeValue], Context | None]


class MetricBuffer:
    """A bounded queue of measurement batches; overflow drops the oldest batch and counts it."""

    DRAIN_INTERVAL_S: Final[float] = 0.1

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._batches: deque[list[Measurement]] = deque()
        self._lock = threading.Lock()
        # Held while recording: a collection waits for a drain in progress, so
        # it sees every batch pushed before it.
        self._recording = threading.Lock()
        self._stop = threading.Event()
        self._drainer: threading.Thread | None = None  # started by the first push
        self._warned = False
        self.dropped = 0
        self._refusal_logged = False
        # A forked child has no drainer, and a lock the parent's drainer held
        # at the fork would never be released there.
        reset_after_fork(self, MetricBuffer._after_fork)

    def _after_fork(self) -> None:
        self._lock, self._recording = threading.Lock(), threading.Lock()
        self._drainer = None
        # The parent's requests and drops: the parent reports them; the child, its own.
        self._batches.clear()
        self.dropped = 0

    def push(self, batch: list[Measurement]) -> None:
        with self._lock:
            if self._drainer is None and not self._stop.is_set():
                self._drainer = threading.Thread(
                    target=self._drain_periodically, name="tts-otel-metric-buffer", daemon=True
                )
                self._drainer.start()
            if len(self._batches) >= self._capacity:
                self.dropped += len(self._batches.popleft())
                warn, self._warned = not self._warned, True
            else:
                warn = False
            self._batches.append(batch)
        if warn:
            _log.warning(
                "tts-otel: %d request batches are waiting to be recorded; the oldest are "
                "dropped and counted in tts.telemetry.dropped. Is the process starved of CPU? "
                "(TTS_OTEL_METRIC_BUFFER sets the bound)",
                self._capacity,
            )

    def _drain_periodically(self) -> None:
        while not self._stop.wait(self.DRAIN_INTERVAL_S):
            self.drain()

    def drain(self) -> int:
        """Record what waits; returns how many measurements that was."""
        with self._recording:
            with self._lock:
                batches, self._batches = self._batches, deque()
            for batch in batches:
                for record, value, attributes, context in batch:
                    try:
                        record(value, attributes, context=context)
                    except Exception:
                        # One value the SDK refuses (an int beyond int64) must not cost
                        # the rest of the batch, nor raise into force_flush or this thread.
                        self._refused()
            return sum(len(batch) for batch in batches)

    def _refused(self) -> None:
        with self._lock:  # push() counts its drops under it too
            self.dropped += 1
        if not self._refusal_logged:
            self._refusal_logged = True
            _log.exception("tts-otel: the SDK refused a measurement; it is dropped and counted")

    def close(self) -> None:
        """Stop the drainer; what is left waits for the last collection."""
        self._stop.set()
        if self._drainer is not None and self._drainer.is_alive():
            self._drainer.join()


class DirectRecorder:
    """Records at once: used when nothing would ever collect (a no-op meter provider)."""

    dropped = 0

    def push(self, batch: list[Measurement]) -> None:
        for record, value, attributes, context in batch:
            record(value, attributes, context=context)

    def drain(self) -> int:
        """Nothing waits here."""
        return 0

    def close(self) -> None:
        """No thread to stop."""
