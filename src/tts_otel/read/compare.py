"""Two selections side by side: per stage and for the request, p50, p95 and real-time factor
of each, their difference ``B - A`` with a bootstrap 95% interval, and a verdict."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tts_otel.read.assemble import Facts
from tts_otel.read.stats import Interval, Statistic, bootstrap, percentile_of, ratio_of_sums
from tts_otel.read.summary import ordered_stages

REQUEST: Final = "request"
NO_DIFFERENCE: Final = "no detectable difference"


@dataclass(frozen=True)
class Row:
    stage: str
    metric: str  # "p50" | "p95" (milliseconds) | "rtf"
    interval: Interval

    @property
    def verdict(self) -> str:
        low, high = self.interval.low, self.interval.high
        if math.isnan(low) or math.isnan(high):
            return "too few requests"
        if self.interval.covers_zero:
            return NO_DIFFERENCE
        return "B slower" if self.interval.diff > 0 else "B faster"

    def as_dict(self) -> dict[str, object]:
        """The row as the HTML report takes it."""
        i = self.interval
        return {
            "stage": self.stage,
            "metric": self.metric,
            "a": i.a,
            "b": i.b,
            "diff": i.diff,
            "low": i.low,
            "high": i.high,
            "verdict": self.verdict,
        }


def _columns(requests: Sequence[Facts], stage: str) -> tuple[list[float], list[float]]:
    """(milliseconds or NaN where the stage did not run, seconds or 0 for the RTF sums)."""
    if stage == REQUEST:
        seconds = [r.seconds for r in requests]
        return [s * 1000 for s in seconds], seconds
    raw = [r.stages.get(stage) for r in requests]
    return [math.nan if s is None else s * 1000 for s in raw], [s or 0.0 for s in raw]


def compare(
    a: Sequence[Facts],
    b: Sequence[Facts],
    *,
    resamples: int = 1000,
    rng: random.Random | None = None,
) -> list[Row]:
    stages = [*ordered_stages({s for r in (*a, *b) for s in r.stages}), REQUEST]
    audio_a = [r.audio_seconds for r in a]
    audio_b = [r.audio_seconds for r in b]
    keys: list[tuple[str, str]] = []
    statistics: list[tuple[Statistic, Statistic]] = []
    for stage in stages:
        ms_a, s_a = _columns(a, stage)
        ms_b, s_b = _columns(b, stage)
        for metric, q in (("p50", 50), ("p95", 95)):
            keys.append((stage, metric))
            statistics.append((percentile_of(ms_a, q), percentile_of(ms_b, q)))
        keys.append((stage, "rtf"))
        statistics.append((ratio_of_sums(s_a, audio_a), ratio_of_sums(s_b, audio_b)))
    intervals = bootstrap(len(a), len(b), statistics, resamples=resamples, rng=rng)
    return [Row(stage, metric, i) for (stage, metric), i in zip(keys, intervals, strict=True)]


def render(
    rows: Sequence[Row],
    label_a: str,
    label_b: str,
    count_a: int,
    count_b: int,
    outside: Sequence[str] = ("", ""),
) -> str:
    """``outside``: per side, what was read but is in no request (empty if nothing)."""
    sides = [
        f"{label} ({count} requests{'; ' + note if note else ''})"
        for label, count, note in zip((label_a, label_b), (count_a, count_b), outside, strict=True)
    ]
    width = max([22, *(len(row.stage) + 2 for row in rows)])
    lines = [
        f"A: {sides[0]}",
        f"B: {sides[1]}",
        "",
        f"{'stage':<{width}}{'metric':<8}{'A':>10}{'B':>10}{'B - A':>10}   "
        f"{'95% interval':<22}verdict",
        "-" * (width + 78),
    ]
    for row in rows:
        i = row.interval
        digits = 3 if row.metric == "rtf" else 1
        span = f"[{i.low:.{digits}f}, {i.high:.{digits}f}]"
        lines.append(
            f"{row.stage:<{width}}{row.metric:<8}{i.a:>10.{digits}f}{i.b:>10.{digits}f}"
            f"{i.diff:>+10.{digits}f}   {span:<22}{row.verdict}"
        )
    lines.append("")
    lines.append(
        "p50/p95 in ms; rtf = processing time / audio time; intervals: bootstrap over requests, 95%"
    )
    return "\n".join(lines)
