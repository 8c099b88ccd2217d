"""Per-stage latency summary of synthesis traces: the table ``tts-otel demo`` and
``tts-otel report`` print. Works on live SDK spans and on OTLP JSON files."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from tts_otel import semconv

_STAGE_ORDER = (
    semconv.STAGE_SPEAKER_EMBEDDING,
    semconv.STAGE_TEXT_NORMALIZATION,
    semconv.STAGE_ACOUSTIC,
    semconv.STAGE_ACOUSTIC_LLM,
    semconv.STAGE_ACOUSTIC_FLOW,
    semconv.STAGE_VOCODER,
)


@dataclass(frozen=True)
class SpanRecord:
    """What the report needs of a span, whatever it was read from."""

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    span_id: str = ""
    parent_id: str = ""

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def from_sdk(spans: Iterable[ReadableSpan]) -> Iterator[SpanRecord]:
    for span in spans:
        if span.context is None or span.start_time is None or span.end_time is None:
            continue
        yield SpanRecord(
            trace_id=format(span.context.trace_id, "032x"),
            span_id=format(span.context.span_id, "016x"),
            parent_id=format(span.parent.span_id, "016x") if span.parent else "",
            name=span.name,
            start_ns=span.start_time,
            end_ns=span.end_time,
            attributes=dict(span.attributes or {}),
        )


def _otlp_value(value: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def from_otlp_json(path: Path) -> Iterator[SpanRecord]:
    """Spans from an OTLP JSON lines file (as the ``file`` exporter writes)."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", []):
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for span in scope_spans.get("spans", []):
                        yield SpanRecord(
                            trace_id=span["traceId"],
                            span_id=span["spanId"],
                            parent_id=span.get("parentSpanId", ""),
                            name=span["name"],
                            start_ns=int(span["startTimeUnixNano"]),
                            end_ns=int(span["endTimeUnixNano"]),
                            attributes={
                                a["key"]: _otlp_value(a.get("value", {}))
                                for a in span.get("attributes", [])
                            },
                        )


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``q`` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class StageRow:
    stage: str
    p50_ms: float
    p95_ms: float
    share: float  # of total request time

    @property
    def nested(self) -> bool:
        return "." in self.stage


@dataclass(frozen=True)
class Summary:
    requests: int
    errors: int
    request_p50_ms: float
    request_p95_ms: float
    stages: tuple[StageRow, ...]
    audio_seconds: float
    processing_seconds: float

    @property
    def real_time_factor(self) -> float:
        """Total processing time over total audio time; below 1 is faster than real time."""
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else math.nan


def summarize(spans: Iterable[SpanRecord]) -> Summary:
    """Stage times are summed per request (segments repeat stages), then ranked."""
    requests: dict[str, SpanRecord] = {}
    stage_totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for span in spans:
        if span.name == semconv.SPAN_SYNTHESIZE:
            requests[span.trace_id] = span
        elif semconv.ATTR_STAGE in span.attributes:
            stage_totals[span.trace_id][str(span.attributes[semconv.ATTR_STAGE])] += span.seconds
    durations = [r.seconds for r in requests.values()]
    processing = sum(durations)
    names = {name for trace in requests for name in stage_totals.get(trace, {})}
    ordered = [s for s in _STAGE_ORDER if s in names] + sorted(names - set(_STAGE_ORDER))
    rows = []
    for name in ordered:
        per_request = [stage_totals[t][name] for t in requests if name in stage_totals[t]]
        rows.append(
            StageRow(
                stage=name,
                p50_ms=percentile(per_request, 50) * 1000,
                p95_ms=percentile(per_request, 95) * 1000,
                share=sum(per_request) / processing if processing else math.nan,
            )
        )
    return Summary(
        requests=len(requests),
        errors=sum(1 for r in requests.values() if r.attributes.get(semconv.ATTR_ERROR_TYPE)),
        request_p50_ms=percentile(durations, 50) * 1000,
        request_p95_ms=percentile(durations, 95) * 1000,
        stages=tuple(rows),
        audio_seconds=sum(
            float(r.attributes.get(semconv.ATTR_AUDIO_DURATION, 0.0)) for r in requests.values()
        ),
        processing_seconds=processing,
    )


def render(summary: Summary) -> str:
    lines = [
        f"{'stage':<22}{'p50 ms':>10}{'p95 ms':>10}{'share':>9}",
        "-" * 51,
    ]
    for row in summary.stages:
        label = ("  " + row.stage) if row.nested else row.stage
        lines.append(f"{label:<22}{row.p50_ms:>10.1f}{row.p95_ms:>10.1f}{row.share:>8.1%} ")
    lines.append("-" * 51)
    lines.append(f"{'request':<22}{summary.request_p50_ms:>10.1f}{summary.request_p95_ms:>10.1f}")
    lines.append("")
    lines.append(
        f"requests {summary.requests} (errors {summary.errors})   "
        f"audio {summary.audio_seconds:.1f} s   processing {summary.processing_seconds:.1f} s   "
        f"real-time factor {summary.real_time_factor:.3f}"
    )
    lines.append("(stage times are per request, summed over its text segments; "
                 "nested stages are part of the one above)")  # fmt: skip
    return "\n".join(lines)
