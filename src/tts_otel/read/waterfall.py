"""Requests as waterfalls: each span a bar on the request's time axis, with its duration,
text segment, GPU time where recorded, and error. Used by ``tts-otel trace``."""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from tts_otel import semconv
from tts_otel.exporters.influxdb.line_protocol import tag_value
from tts_otel.read import assemble
from tts_otel.read.assemble import Request
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import DIMENSIONS, Selection, short_name

WIDTH: Final = 40
_SHOWN_DIMENSIONS: Final = tuple(key for key in DIMENSIONS.values() if key != "service.name")


def slowest(requests: Iterable[Request], count: int, stage: str | None = None) -> list[Request]:
    """The ``count`` slowest, by request duration or by one stage's time; slowest first.

    A heap of ``count``: the rest of the stream is never held.
    """
    tie = itertools.count()

    def key(request: Request) -> float:
        if stage is None:
            return request.root.seconds
        return request.stage_seconds().get(stage, -1.0)

    heap: list[tuple[float, int, Request]] = []
    for request in requests:
        entry = (key(request), next(tie), request)
        if len(heap) < count:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    return [request for _, _, request in sorted(heap, key=lambda e: (-e[0], e[1]))]


def latest(requests: Iterable[Request], count: int) -> list[Request]:
    """The ``count`` that started last, oldest first."""
    kept = deque(requests, maxlen=count * 4 + 16)  # streams end in end order, not start
    return sorted(kept, key=lambda r: r.root.start_ns)[-count:]


def render(requests: Iterable[Request]) -> str:
    return "\n\n".join(_waterfall(request) for request in requests)


def render_trees(spans: Iterable[SpanRecord], last: int = 1) -> str:
    """The last ``last`` requests among spans at hand (by start time), as waterfalls."""
    return render(latest(assemble.requests(spans, Selection(), ordered=False), last))


def _details(span: SpanRecord) -> str:
    attributes = span.attributes
    details = []
    queued = attributes.get(semconv.ATTR_QUEUE_WAIT)
    if isinstance(queued, int | float):  # before the request began: not a bar of it
        details.append(f"queued {float(queued) * 1000:.1f} ms before")
    if attributes.get(semconv.ATTR_PROMPT_REUSED) is True:
        details.append("prompt work reused")
    segment = attributes.get(semconv.ATTR_SEGMENT_INDEX)
    if segment is not None:
        details.append(f"segment {segment}")
    gpu = attributes.get(semconv.ATTR_STAGE_GPU_DURATION)
    if gpu is not None:
        details.append(f"gpu {float(gpu) * 1000:.1f} ms")
    error = attributes.get(semconv.ATTR_ERROR_TYPE)
    if error is None and attributes.get("otel.status_code") == "Error":
        error = "status Error"
    if error is not None:
        details.append(f"error {error}")
    return f"  ({', '.join(details)})" if details else ""


def _bar(span: SpanRecord, origin: int, total: int) -> str:
    scale = WIDTH / total if total > 0 else 0.0
    offset = min(WIDTH - 1, max(0, round((span.start_ns - origin) * scale)))
    length = min(WIDTH - offset, max(1, round((span.end_ns - span.start_ns) * scale)))
    return " " * offset + "█" * length + " " * (WIDTH - offset - length)


def _header(root: SpanRecord) -> str:
    start = datetime.fromtimestamp(root.start_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    dims = [
        f"{short_name(key)}={tag_value(root.attributes[key])}"
        for key in _SHOWN_DIMENSIONS
        if root.attributes.get(key) is not None
    ]
    # The span id too: a trace may hold several requests (a web UI's clicks, a session's).
    header = f"trace {root.trace_id}  span {root.span_id}  {start[:-3]} UTC  {' '.join(dims)}"
    return header.rstrip()


def _context(request: Request) -> str | None:
    """What the request's span is a child of: a header line, never a bar of the request."""
    root, parent = request.root, request.context
    if not root.parent_id:
        return None
    if parent is None:
        return f"  in span {root.parent_id} (not read)"
    if parent.name == semconv.SPAN_SYNTHESIZE:
        role = "another request"
    else:
        role = "context, not part of the request"
    if parent.end_ns < root.start_ns:
        ended = (root.start_ns - parent.end_ns) / 1e9
        role += f"; it ended {ended:.3f} s before this request began"
    return f"  in {parent.name} (span {parent.span_id}: {role})"


def _order(span: SpanRecord) -> tuple[int, int, str, str]:
    # By start; spans that start together in an order of their own (longest first), not in
    # the order they were read: influxd returns equal timestamps in an order that depends
    # on the query (all spans of a range, or one trace's), and a file in the export's.
    return (span.start_ns, -span.end_ns, span.name, span.span_id)


def _waterfall(request: Request) -> str:
    root = request.root
    children: dict[str, list[SpanRecord]] = defaultdict(list)
    known = {span.span_id for span in request.spans}
    for span in request.children:
        # A span whose parent is missing (not stored) hangs off the root.
        children[span.parent_id if span.parent_id in known else root.span_id].append(span)
    total = root.end_ns - root.start_ns
    axis = f"0 .. {total / 1e6:.1f} ms"
    context = _context(request)
    lines = [_header(root), *([context] if context else []), f"{'':<44}{'':>13} |{axis:^{WIDTH}}|"]

    drawn: set[int] = set()

    def walk(span: SpanRecord, depth: int) -> None:
        if id(span) in drawn:  # stored ids can repeat (a cycle would never end)
            return
        drawn.add(id(span))
        label = "  " * depth + span.name
        lines.append(
            f"{label:<44}{span.seconds * 1000:>10.1f} ms |{_bar(span, root.start_ns, total)}|"
            f"{_details(span)}"
        )
        for child in sorted(children.get(span.span_id, []), key=_order):
            walk(child, depth + 1)

    walk(root, 0)
    return "\n".join(lines)
