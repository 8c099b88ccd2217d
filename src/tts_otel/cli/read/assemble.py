"""Spans into requests as they stream: a request is its ``tts.synthesize`` span and the spans
of its trace.

From a time-ordered stream (InfluxDB) a request is complete once the stream has passed the
end of its root span, since every span of it starts inside the root; it is handed on then
and forgotten, so memory holds only the requests in flight at one moment, whatever the
range. A file is not ordered: it is grouped whole, as it always was.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tts_otel import semconv
from tts_otel.cli.read.records import SpanRecord
from tts_otel.cli.read.selection import Selection, outcome


@dataclass(slots=True)
class Request:
    root: SpanRecord
    children: list[SpanRecord] = field(default_factory=list)

    @property
    def spans(self) -> list[SpanRecord]:
        return [self.root, *self.children]

    def stage_seconds(self) -> dict[str, float]:
        """Time per stage, summed over the request's text segments (segments repeat stages)."""
        totals: dict[str, float] = defaultdict(float)
        for span in self.children:
            stage = span.attributes.get(semconv.ATTR_STAGE)
            if stage is not None:
                totals[str(stage)] += span.seconds
        return totals

    @property
    def audio_seconds(self) -> float:
        return float(self.root.attributes.get(semconv.ATTR_AUDIO_DURATION, 0.0) or 0.0)

    @property
    def failed(self) -> bool:
        return outcome(self.root.attributes) == semconv.OUTCOME_ERROR


@dataclass(frozen=True, slots=True)
class Facts:
    """What ``report`` and ``compare`` keep of a request: a few numbers, not its spans."""

    start_ns: int
    seconds: float
    audio_seconds: float
    failed: bool
    attributes: Mapping[str, Any]
    stages: Mapping[str, float]

    def rtf(self) -> float:
        return self.seconds / self.audio_seconds if self.audio_seconds else math.nan


def facts(request: Request) -> Facts:
    return Facts(
        start_ns=request.root.start_ns,
        seconds=request.root.seconds,
        audio_seconds=request.audio_seconds,
        failed=request.failed,
        attributes=request.root.attributes,
        stages=request.stage_seconds(),
    )


def requests(spans: Iterable[SpanRecord], selection: Selection, ordered: bool) -> Iterator[Request]:
    """The selected requests: in order of their end (ordered streams) or start (files)."""
    assemble = _streamed if ordered else _grouped
    for request in assemble(spans):
        if selection.accepts(request.root.start_ns, request.root.attributes):
            yield request


def _is_root(span: SpanRecord) -> bool:
    return span.name == semconv.SPAN_SYNTHESIZE


def _streamed(spans: Iterable[SpanRecord]) -> Iterator[Request]:
    pending: dict[str, Request] = {}
    ends: list[tuple[int, str]] = []
    # Children seen before their root: possible only at the root's own timestamp (a
    # child never starts before its request), so this holds one instant's spans at most.
    early: dict[str, list[SpanRecord]] = defaultdict(list)
    early_at = -1
    for span in spans:
        while ends and ends[0][0] < span.start_ns:
            done = pending.pop(heapq.heappop(ends)[1], None)
            if done is not None:
                yield done
        if span.start_ns != early_at:
            early.clear()
            early_at = span.start_ns
        if _is_root(span):
            if span.trace_id not in pending:
                pending[span.trace_id] = Request(span, early.pop(span.trace_id, []))
                heapq.heappush(ends, (span.end_ns, span.trace_id))
        elif span.trace_id in pending:
            pending[span.trace_id].children.append(span)
        else:
            early[span.trace_id].append(span)
    for _, trace_id in sorted(ends):
        done = pending.pop(trace_id, None)
        if done is not None:
            yield done


def _grouped(spans: Iterable[SpanRecord]) -> Iterator[Request]:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    found = []
    for trace in by_trace.values():
        root = next((s for s in trace if _is_root(s)), None)
        if root is not None:
            found.append(Request(root, [s for s in trace if s is not root]))
    found.sort(key=lambda r: r.root.start_ns)
    yield from found
