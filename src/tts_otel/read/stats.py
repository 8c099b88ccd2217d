"""Percentiles and the bootstrap interval of a difference, in plain Python (no numpy at run
time: it is not a dependency of the package)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Statistic = Callable[[Sequence[int]], float]
"""A statistic of one resample, given as the indices drawn (so paired columns stay paired)."""


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``q`` in [0, 100]."""
    if not values:
        return math.nan
    return sorted_percentile(sorted(values), q)


def sorted_percentile(ordered: Sequence[float], q: float) -> float:
    """:func:`percentile` of values already sorted (several percentiles from one sort)."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Interval:
    """A difference ``b - a`` with its bootstrap confidence interval."""

    a: float
    b: float
    low: float
    high: float

    @property
    def diff(self) -> float:
        return self.b - self.a

    @property
    def covers_zero(self) -> bool:
        # NaN bounds (too little data) must not be read as a detected difference.
        return not (self.low > 0 or self.high < 0)


def bootstrap(
    size_a: int,
    size_b: int,
    statistics: Sequence[tuple[Statistic, Statistic]],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    rng: random.Random | None = None,
) -> list[Interval]:
    """Percentile bootstrap of ``stat_b(B) - stat_a(A)`` for each pair of statistics.

    Each round draws one resample of A's indices and one of B's and evaluates every
    statistic on them: the stages of a request stay together, and one round serves all rows.
    """
    rng = rng or random.Random(0)
    full_a, full_b = range(size_a), range(size_b)
    point = [(stat_a(full_a), stat_b(full_b)) for stat_a, stat_b in statistics]
    if size_a < 2 or size_b < 2:
        return [Interval(a, b, math.nan, math.nan) for a, b in point]
    diffs: list[list[float]] = [[] for _ in statistics]
    for _ in range(resamples):
        draw_a = rng.choices(full_a, k=size_a)
        draw_b = rng.choices(full_b, k=size_b)
        for column, (stat_a, stat_b) in zip(diffs, statistics, strict=True):
            difference = stat_b(draw_b) - stat_a(draw_a)
            if not math.isnan(difference):
                column.append(difference)
    tail = (1 - confidence) / 2 * 100
    intervals = []
    for (a, b), column in zip(point, diffs, strict=True):
        column.sort()
        low = sorted_percentile(column, tail)
        high = sorted_percentile(column, 100 - tail)
        intervals.append(Interval(a, b, low, high))
    return intervals


def percentile_of(column: Sequence[float], q: float) -> Statistic:
    """The ``q``-th percentile of ``column`` over a resample's indices (NaN entries skipped)."""

    pick = column.__getitem__
    if any(math.isnan(v) for v in column):

        def sparse(indices: Sequence[int]) -> float:
            return sorted_percentile(sorted(v for v in map(pick, indices) if v == v), q)

        return sparse

    def statistic(indices: Sequence[int]) -> float:
        return sorted_percentile(sorted(map(pick, indices)), q)

    return statistic


def ratio_of_sums(numerator: Sequence[float], denominator: Sequence[float]) -> Statistic:
    """``sum(numerator) / sum(denominator)`` over a resample (the real-time factor)."""

    def statistic(indices: Sequence[int]) -> float:
        bottom = sum(denominator[i] for i in indices)
        return sum(numerator[i] for i in indices) / bottom if bottom else math.nan

    return statistic
