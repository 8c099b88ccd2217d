"""One request as an indented span tree with durations: ``tts-otel trace``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tts_otel import semconv
from tts_otel.report import SpanRecord


def render_trees(spans: Iterable[SpanRecord], last: int = 1) -> str:
    """The last ``last`` requests (by start time), each as a tree of its spans."""
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    requests = sorted(
        (s for trace in by_trace.values() for s in trace if s.name == semconv.SPAN_SYNTHESIZE),
        key=lambda s: s.start_ns,
    )
    blocks = [_tree(request, by_trace[request.trace_id]) for request in requests[-last:]]
    return "\n\n".join(blocks)


def _tree(root: SpanRecord, spans: list[SpanRecord]) -> str:
    children: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        children[span.parent_id].append(span)
    lines = [f"trace {root.trace_id}"]

    def walk(span: SpanRecord, depth: int) -> None:
        details = []
        segment = span.attributes.get(semconv.ATTR_SEGMENT_INDEX)
        if segment is not None:
            details.append(f"segment {segment}")
        if semconv.ATTR_ERROR_TYPE in span.attributes:
            details.append(f"error {span.attributes[semconv.ATTR_ERROR_TYPE]}")
        suffix = f"  ({', '.join(details)})" if details else ""
        label = "  " * depth + span.name
        lines.append(f"{label:<44}{span.seconds * 1000:>10.1f} ms{suffix}")
        for child in sorted(children.get(span.span_id, []), key=lambda s: s.start_ns):
            walk(child, depth + 1)

    walk(root, 0)
    return "\n".join(lines)
