"""Spans into requests as they stream: a request is a ``tts.synthesize`` span and its subtree,
wherever it sits in its trace (the root, or under a web server's HTTP span or a session's
span, several to a trace).

Each span goes to the request of its nearest ``tts.synthesize`` ancestor, found by parent id.
Spans of other instrumentation around a request (an HTTP server span, a session) are its
context: never a stage, never a request. A stage span with no ``tts.synthesize`` above it is
outside any request: it is counted (:class:`Outside`), never added to one. A span whose
parent was not read (not stored, or past what is remembered) goes to the one request of its
trace that was running when it started, if exactly one was; else it is outside too.

Spans come in order of their start (InfluxDB streams them so; a file is sorted whole first),
so a parent is known before its children, and a request is complete once the stream has
passed the end of its span: it is handed on then and forgotten. Memory holds the requests
in flight and a bounded number of spans outside them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tts_otel import semconv
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import Selection, outcome

# Spans outside any request remembered as parents (an HTTP span holding many requests, or
# one that ended long before the requests its context started).
OUTSIDE_REMEMBERED: Final = 10_000

_Key = tuple[str, str]  # (trace id, span id)


@dataclass(slots=True)
class Request:
    root: SpanRecord
    children: list[SpanRecord] = field(default_factory=list)
    context: SpanRecord | None = None
    """The span the request's span is a child of, when read: another instrumentation's span
    (an HTTP request, a session) or, for a request nested in another, that one's span."""

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


@dataclass
class Outside:
    """Stage spans read that belong to no request (no ``tts.synthesize`` span above them):
    stage work done outside a request, or a request whose span was lost. Counted only
    without ``--where`` conditions: such a span has no request whose attributes to test."""

    stage_spans: int = 0

    def note(self) -> str:
        if not self.stage_spans:
            return ""
        one = self.stage_spans == 1
        return (
            f"{self.stage_spans} stage {'span' if one else 'spans'} outside any request (no "
            f"tts.synthesize span above {'it' if one else 'them'}): not counted"
        )


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


def requests(
    spans: Iterable[SpanRecord],
    selection: Selection,
    ordered: bool,
    outside: Outside | None = None,
) -> Iterator[Request]:
    """The selected requests: in order of their end (ordered streams) or start (files).

    ``outside``, if given, counts the selected stage spans that are in no request.
    """
    assembler = _Assembler(selection, outside)
    if ordered:
        found: Iterable[Request] = assembler.run(spans)
    else:
        found = sorted(assembler.run(sorted(spans, key=_by_start)), key=_root_start)
    for request in found:
        if selection.accepts(request.root.start_ns, request.root.attributes):
            yield request


def _by_start(span: SpanRecord) -> tuple[int, int]:
    return span.start_ns, -span.end_ns


def _root_start(request: Request) -> int:
    return request.root.start_ns


class _Assembler:
    def __init__(self, selection: Selection, outside: Outside | None) -> None:
        self.selection = selection
        self.outside = outside
        self.owners: dict[_Key, Request] = {}  # spans of the requests in flight
        self.in_flight: dict[str, list[Request]] = defaultdict(list)  # by trace
        self.ends: list[tuple[int, int, Request]] = []
        self.tie = itertools.count()
        self.remembered: OrderedDict[_Key, SpanRecord] = OrderedDict()  # outside requests
        # Spans whose parent is not known yet: possible at the parent's own start only (a
        # child never starts before its parent; the read order of equal times is free), so
        # this holds one instant's spans at most.
        self.waiting: dict[_Key, list[SpanRecord]] = defaultdict(list)
        self.waiting_at = -1

    def run(self, spans: Iterable[SpanRecord]) -> Iterator[Request]:
        for span in spans:
            if span.start_ns != self.waiting_at:
                self._give_up_waiting()  # before any request it may belong to is handed on
                self.waiting_at = span.start_ns
            while self.ends and self.ends[0][0] < span.start_ns:
                yield self._done(heapq.heappop(self.ends)[2])
            self._place(span)
        self._give_up_waiting()
        while self.ends:
            yield self._done(heapq.heappop(self.ends)[2])

    def _done(self, request: Request) -> Request:
        trace = request.root.trace_id
        for span in request.spans:
            if self.owners.get((trace, span.span_id)) is request:
                del self.owners[(trace, span.span_id)]
        running = self.in_flight[trace]
        running.remove(request)
        if not running:
            del self.in_flight[trace]
        return request

    def _place(self, span: SpanRecord) -> None:
        parent = (span.trace_id, span.parent_id)
        if span.name == semconv.SPAN_SYNTHESIZE:
            self._start_request(span, parent)
        elif not span.parent_id:
            self._leave_out(span)  # a trace's root, and not a request: context
        elif parent in self.owners:
            self._join(self.owners[parent], span)
        elif parent in self.remembered:
            self._leave_out(span)
        else:
            self.waiting[parent].append(span)

    def _start_request(self, span: SpanRecord, parent: _Key) -> None:
        same = self.owners.get((span.trace_id, span.span_id))
        if span.span_id and same is not None and same.root.span_id == span.span_id:
            return  # the same span read twice (exported again): one request
        above = self.owners.get(parent)
        context = above.root if above is not None else self.remembered.get(parent)
        request = Request(span, context=context if span.parent_id else None)
        self.in_flight[span.trace_id].append(request)
        heapq.heappush(self.ends, (span.end_ns, next(self.tie), request))
        self._known(span, request)

    def _join(self, request: Request, span: SpanRecord) -> None:
        request.children.append(span)
        self._known(span, request)

    def _leave_out(self, span: SpanRecord) -> None:
        # Time alone: the --where conditions are on requests (see Outside).
        if (
            span.attributes.get(semconv.ATTR_STAGE) is not None
            and self.outside is not None
            and not self.selection.where
            and self.selection.accepts(span.start_ns, {})
        ):
            self.outside.stage_spans += 1
        if span.span_id:
            key = (span.trace_id, span.span_id)
            self.remembered[key] = span
            self.remembered.move_to_end(key)
            if len(self.remembered) > OUTSIDE_REMEMBERED:
                self.remembered.popitem(last=False)
        self._known(span, None)

    def _known(self, span: SpanRecord, request: Request | None) -> None:
        """``span`` is placed: so are the spans that waited for it as their parent."""
        if not span.span_id:
            return
        key = (span.trace_id, span.span_id)
        if request is not None:
            self.owners[key] = request
        for child in self.waiting.pop(key, ()):
            self._place(child)

    def _give_up_waiting(self) -> None:
        """Spans whose parent never came: to the one request of the trace running when the
        span started, if exactly one was; else outside any request."""
        while self.waiting:
            _, spans = self.waiting.popitem()
            for span in spans:
                running = [
                    r
                    for r in self.in_flight.get(span.trace_id, ())
                    if r.root.start_ns <= span.start_ns <= r.root.end_ns
                ]
                if len(running) == 1:
                    self._join(running[0], span)
                else:
                    self._leave_out(span)
