"""Per-stage latency tables: ``tts-otel report`` (and the table ``demo`` prints), overall, per
group of dimension values (``--by``) and per time bucket (``--every``).

Requests are folded in as they arrive: a group keeps, per stage, one float per request
(exact percentiles need the values), never the spans.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tts_otel import semconv
from tts_otel.exporters.influxdb.line_protocol import tag_value
from tts_otel.read import assemble
from tts_otel.read.assemble import Facts
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import Selection, short_name
from tts_otel.read.stats import sorted_percentile


@dataclass(frozen=True)
class StageRow:
    stage: str
    p50_ms: float
    p95_ms: float
    share: float  # of total request time
    p99_ms: float = math.nan

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
    request_p99_ms: float = math.nan

    @property
    def real_time_factor(self) -> float:
        """Total processing time over total audio time; below 1 is faster than real time."""
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else math.nan


def ordered_stages(names: Iterable[str]) -> list[str]:
    """Stages as a tree: each under its parent (the name before its last dot), siblings in
    pipeline order, then unknown ones by name. The one order of every table and chart."""
    return sorted(set(names), key=_stage_rank)


def _stage_rank(stage: str) -> list[tuple[int, str]]:
    # One (position, name) per level: a parent's key is a prefix of its children's, so it
    # sorts just before them.
    parts = stage.split(".")
    rank = []
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        order = semconv.STAGE_ORDER
        known = order.index(prefix) if prefix in order else len(order)
        rank.append((known, prefix))
    return rank


def stage_label(stage: str) -> str:
    """A stage's name indented by its depth, as the tables print it."""
    return "  " * stage.count(".") + stage


def _ms(ordered: Sequence[float], q: float) -> float:
    return sorted_percentile(ordered, q) * 1000


@dataclass
class Accumulator:
    """One group's requests, folded in one at a time."""

    durations: array[float] = field(default_factory=lambda: array("d"))
    stages: dict[str, array[float]] = field(default_factory=dict)
    audio_seconds: float = 0.0
    errors: int = 0

    def add(self, request: Facts) -> None:
        self.durations.append(request.seconds)
        self.audio_seconds += request.audio_seconds
        self.errors += request.failed
        for stage, seconds in request.stages.items():
            self.stages.setdefault(stage, array("d")).append(seconds)

    def summary(self) -> Summary:
        processing = sum(self.durations)
        rows = []
        for name in ordered_stages(self.stages):
            values = sorted(self.stages[name])
            rows.append(
                StageRow(
                    stage=name,
                    p50_ms=_ms(values, 50),
                    p95_ms=_ms(values, 95),
                    p99_ms=_ms(values, 99),
                    share=sum(values) / processing if processing else math.nan,
                )
            )
        durations = sorted(self.durations)
        return Summary(
            requests=len(durations),
            errors=self.errors,
            request_p50_ms=_ms(durations, 50),
            request_p95_ms=_ms(durations, 95),
            request_p99_ms=_ms(durations, 99),
            stages=tuple(rows),
            audio_seconds=self.audio_seconds,
            processing_seconds=processing,
        )


def summarize(spans: Iterable[SpanRecord]) -> Summary:
    """The table ``demo`` prints, from spans at hand: stage times are summed per request
    (segments repeat stages), then ranked."""
    group = Accumulator()
    for request in assemble.requests(spans, Selection(), ordered=False):
        group.add(assemble.facts(request))
    return group.summary()


GroupKey = tuple[int, tuple[str, ...]]


def fold(
    requests: Iterable[Facts], by: Sequence[str] = (), every_ns: int | None = None
) -> dict[GroupKey, Accumulator]:
    """Requests into groups keyed by (time bucket start or 0, values of the ``by`` keys)."""
    groups: dict[GroupKey, Accumulator] = {}
    for request in requests:
        values = tuple(_value(request, key) for key in by)
        bucket = request.start_ns // every_ns * every_ns if every_ns else 0
        groups.setdefault((bucket, values), Accumulator()).add(request)
    return groups


def _value(request: Facts, key: str) -> str:
    raw = request.attributes.get(key)
    return "-" if raw is None else tag_value(raw)


def label(by: Sequence[str], values: Sequence[str]) -> str:
    return " ".join(f"{short_name(k)}={v}" for k, v in zip(by, values, strict=True))


def render(summary: Summary, outside: str = "") -> str:
    """The table; ``outside``, a line saying what was read but is in no request."""
    labels = [stage_label(row.stage) for row in summary.stages]
    width = max([22, *(len(label) + 2 for label in labels)])
    rule = "-" * (width + 39)
    lines = [f"{'stage':<{width}}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'share':>9}", rule]
    for label, row in zip(labels, summary.stages, strict=True):
        lines.append(
            f"{label:<{width}}{row.p50_ms:>10.1f}{row.p95_ms:>10.1f}{row.p99_ms:>10.1f}"
            f"{row.share:>8.1%} "
        )
    lines.append(rule)
    lines.append(
        f"{'request':<{width}}{summary.request_p50_ms:>10.1f}{summary.request_p95_ms:>10.1f}"
        f"{summary.request_p99_ms:>10.1f}"
    )
    lines.append("")
    lines.append(
        f"requests {summary.requests} (errors {summary.errors})   "
        f"audio {summary.audio_seconds:.1f} s   processing {summary.processing_seconds:.1f} s   "
        f"real-time factor {summary.real_time_factor:.3f}"
    )
    if outside:
        lines.append(outside)
    lines.append(
        "(a request is a tts.synthesize span and its subtree; stage times are per "
        "request, summed over its text segments; nested stages are part of the one "
        "above)"
    )
    return "\n".join(lines)


def render_groups(groups: dict[GroupKey, Accumulator], by: Sequence[str]) -> str:
    blocks = []
    for (_, values), group in sorted(groups.items()):
        blocks.append(f"== {label(by, values)} ==\n{render(group.summary())}")
    return "\n\n".join(blocks)


def render_trend(groups: dict[GroupKey, Accumulator], by: Sequence[str]) -> str:
    """One line per time bucket (and group): request percentiles, RTF and stage p95s."""
    summaries = {key: group.summary() for key, group in sorted(groups.items())}
    stages = ordered_stages(row.stage for s in summaries.values() for row in s.stages)
    header = f"{'bucket (UTC)':<18}{'group':<22}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}"
    header += f"{'p99 ms':>9}{'RTF':>7}" + "".join(f"{s[:12] + ' p95':>17}" for s in stages)
    lines = [header, "-" * len(header)]
    for (bucket, values), s in summaries.items():
        when = datetime.fromtimestamp(bucket / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
        per_stage = {row.stage: row.p95_ms for row in s.stages}
        line = f"{when:<18}{label(by, values) or 'all':<22}{s.requests:>9}"
        line += f"{s.request_p50_ms:>9.1f}{s.request_p95_ms:>9.1f}{s.request_p99_ms:>9.1f}"
        line += f"{s.real_time_factor:>7.3f}"
        line += "".join(f"{per_stage.get(stage, math.nan):>17.1f}" for stage in stages)
        lines.append(line)
    return "\n".join(lines)
