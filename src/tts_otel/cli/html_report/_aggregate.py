"""What the page draws, gathered in one pass over the span stream, in bounded memory.

Spans are consumed once, as they stream (from a file or InfluxDB, millions of
them): what the charts need is aggregated on the way. Each chart series keeps
a uniform random sample (reservoir sampling, seeded, so a report is
reproducible) of at most ``SAMPLE_SIZE`` points; counts are exact. The slowest
requests keep their whole trace; spans that arrive before their request's root
span wait in a bounded buffer (``PENDING_SPANS``), so a slow request whose
spans came very far ahead of its root may be drawn without them.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

from tts_otel import semconv
from tts_otel.cli.read.records import SpanRecord

SAMPLE_SIZE: Final = 2000
SLOWEST: Final = 5
MAX_CONFIGURATIONS: Final = 12
PENDING_SPANS: Final = 100_000
SPANS_PER_TRACE: Final = 500
OTHER: Final = "other"
_MIB: Final = 1024 * 1024
_T = TypeVar("_T")


class Sample(Generic[_T]):
    """At most ``size`` items, a uniform random sample of all added (Vitter's algorithm R)."""

    __slots__ = ("items", "rng", "seen", "size")

    def __init__(self, rng: random.Random, size: int = SAMPLE_SIZE) -> None:
        self.items: list[_T] = []
        self.rng, self.size, self.seen = rng, size, 0

    def add(self, item: _T) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < self.size:
                self.items[slot] = item


class Slowest:
    """The ``n`` slowest requests (``tts.synthesize`` spans) with every span of their trace."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[tuple[int, str]] = []  # (duration ns, trace id), fastest first
        self.kept: dict[str, list[SpanRecord]] = {}
        # Spans whose trace has no root yet (an SDK exports children first), oldest first.
        self._pending: OrderedDict[str, list[SpanRecord]] = OrderedDict()
        self._pending_spans = 0
        # Traces already ruled out, so their late spans are not buffered again.
        self._out: OrderedDict[str, None] = OrderedDict()

    def add(self, span: SpanRecord) -> None:
        trace = span.trace_id
        kept = self.kept.get(trace)
        if kept is not None:
            if len(kept) < SPANS_PER_TRACE:
                kept.append(span)
        elif trace in self._out:
            return
        elif span.name == semconv.SPAN_SYNTHESIZE:
            self._decide(trace, span)
        else:
            waiting = self._pending.setdefault(trace, [])
            if len(waiting) < SPANS_PER_TRACE:
                waiting.append(span)
                self._pending_spans += 1
            while self._pending_spans > PENDING_SPANS:
                _, dropped = self._pending.popitem(last=False)
                self._pending_spans -= len(dropped)

    def _decide(self, trace: str, root: SpanRecord) -> None:
        spans = self._pending.pop(trace, [])
        self._pending_spans -= len(spans)
        spans.append(root)
        duration = root.end_ns - root.start_ns
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, (duration, trace))
        elif self._heap and duration > self._heap[0][0]:
            _, evicted = heapq.heapreplace(self._heap, (duration, trace))
            del self.kept[evicted]
            self._rule_out(evicted)
        else:
            self._rule_out(trace)
            return
        self.kept[trace] = spans

    def _rule_out(self, trace: str) -> None:
        self._out[trace] = None
        if len(self._out) > PENDING_SPANS:
            self._out.popitem(last=False)

    def slowest_first(self) -> list[list[SpanRecord]]:
        return [self.kept[trace] for _, trace in sorted(self._heap, reverse=True)]


def configuration_of(attributes: Mapping[str, Any]) -> str:
    """The source article's configuration: KV cache, sample rate and model version."""
    parts = []
    for key, label in (
        (semconv.ATTR_KV_CACHE, "kv_cache"),
        (semconv.ATTR_SAMPLE_RATE, "sample_rate"),
        (semconv.ATTR_MODEL_VERSION, "model"),
    ):
        value = attributes.get(key)
        if value is not None:
            parts.append(f"{label}={str(value).lower() if isinstance(value, bool) else value}")
    return " ".join(parts) or "all requests"


def number(value: object) -> float | None:
    """A finite int or float attribute as a float; anything else (bools included) as None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class Aggregate:
    """Everything the page draws, gathered in one pass over the spans."""

    def __init__(self, slowest: int) -> None:
        self.rng = random.Random(0)
        self.spans = self.requests = self.errors = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.configurations: set[str] = set()
        self.latency: dict[str, Sample[tuple[int, float]]] = {}
        self.memory: dict[str, Sample[tuple[float, float]]] = {}
        self.by_length: dict[tuple[str, str], Sample[float]] = {}
        self.stages: dict[str, Sample[tuple[int, float]]] = {}
        self.stage_counts: dict[str, int] = {}
        self.slowest = Slowest(slowest)

    def _sample(self, table: dict[Any, Sample[Any]], key: Any) -> Sample[Any]:
        sample = table.get(key)
        if sample is None:
            sample = table[key] = Sample(self.rng)
        return sample

    def add(self, span: SpanRecord) -> None:
        self.spans += 1
        start, seconds = span.start_ns, (span.end_ns - span.start_ns) / 1e9
        self.first_ns = start if self.first_ns is None else min(self.first_ns, start)
        self.last_ns = span.end_ns if self.last_ns is None else max(self.last_ns, span.end_ns)
        attributes = span.attributes
        self.slowest.add(span)
        stage = attributes.get(semconv.ATTR_STAGE)
        if stage is not None:
            name = str(stage)
            self.stage_counts[name] = self.stage_counts.get(name, 0) + 1
            self._sample(self.stages, name).add((start, seconds))
        if span.name != semconv.SPAN_SYNTHESIZE:
            return
        self.requests += 1
        if attributes.get(semconv.ATTR_OUTCOME) == semconv.OUTCOME_ERROR:
            self.errors += 1
        configuration = configuration_of(attributes)
        if configuration not in self.configurations:
            # Bounded series: configurations past the first few share one.
            if len(self.configurations) < MAX_CONFIGURATIONS:
                self.configurations.add(configuration)
            else:
                configuration = OTHER
        self._sample(self.latency, configuration).add((start, seconds))
        audio = number(attributes.get(semconv.ATTR_AUDIO_DURATION))
        memory = number(attributes.get(semconv.ATTR_GPU_MEMORY_PEAK))
        if audio is not None and memory is not None:
            self._sample(self.memory, configuration).add((audio, memory / _MIB))
        length_bin = attributes.get(semconv.ATTR_TEXT_LENGTH_BIN)
        if length_bin is not None:
            self._sample(self.by_length, (str(length_bin), configuration)).add(seconds)
