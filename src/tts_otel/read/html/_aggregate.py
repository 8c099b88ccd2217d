"""What the page draws, gathered in one pass over the requests, in bounded memory.

Requests are consumed once, as they stream (assembled from a file or InfluxDB,
millions of spans): what the charts need is aggregated on the way. Each chart
series keeps a uniform random sample (reservoir sampling, seeded, so a report is
reproducible) of at most ``SAMPLE_SIZE`` points; counts are exact. The slowest
requests are kept whole (their own spans, not the rest of their trace).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

from tts_otel import semconv
from tts_otel.read.assemble import Request
from tts_otel.read.records import SpanRecord

SAMPLE_SIZE: Final = 2000
SLOWEST: Final = 5
MAX_CONFIGURATIONS: Final = 12
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
    """The ``n`` slowest requests, whole; a heap of ``n``: the rest are never held."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[tuple[int, int, Request]] = []  # (duration ns, arrival, request)
        self._arrivals = itertools.count()

    def add(self, request: Request) -> None:
        root = request.root
        entry = (root.end_ns - root.start_ns, -next(self._arrivals), request)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, entry)
        elif self._heap and entry[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, entry)

    def slowest_first(self) -> list[list[SpanRecord]]:
        ranked = sorted(self._heap, key=lambda entry: entry[:2], reverse=True)
        return [request.spans for _, _, request in ranked]


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

    def add(self, request: Request) -> None:
        for span in request.spans:
            self.spans += 1
            start = span.start_ns
            self.first_ns = start if self.first_ns is None else min(self.first_ns, start)
            self.last_ns = span.end_ns if self.last_ns is None else max(self.last_ns, span.end_ns)
            stage = span.attributes.get(semconv.ATTR_STAGE)
            if stage is not None:
                name = str(stage)
                self.stage_counts[name] = self.stage_counts.get(name, 0) + 1
                self._sample(self.stages, name).add((start, span.seconds))
        self.slowest.add(request)
        root = request.root
        start, seconds, attributes = root.start_ns, root.seconds, root.attributes
        self.requests += 1
        self.errors += request.failed
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
