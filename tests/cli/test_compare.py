"""compare's statistics are right: a known shift is found and its interval covers it; with no
shift the interval misses zero about 5% of the time."""

from __future__ import annotations

import random

from tts_otel.read.assemble import Facts
from tts_otel.read.compare import NO_DIFFERENCE, compare
from tts_otel.read.stats import bootstrap, percentile, percentile_of

SHIFT_S = 0.2  # added to B's vocoder: B's request and vocoder p50 move by exactly this


def _requests(rng: random.Random, count: int, vocoder_shift: float = 0.0) -> list[Facts]:
    made = []
    for index in range(count):
        acoustic = rng.lognormvariate(0, 0.25)
        vocoder = 0.1 * rng.lognormvariate(0, 0.25) + vocoder_shift
        made.append(
            Facts(
                start_ns=index,
                seconds=acoustic + vocoder,
                audio_seconds=2.0,
                failed=False,
                attributes={},
                stages={"acoustic": acoustic, "vocoder": vocoder},
            )
        )
    return made


def test_a_known_shift_is_detected_and_its_interval_covers_it() -> None:
    rng = random.Random(11)
    a = _requests(rng, 300)
    b = [
        Facts(
            r.start_ns,
            r.seconds + SHIFT_S,
            r.audio_seconds,
            r.failed,
            r.attributes,
            {**r.stages, "vocoder": r.stages["vocoder"] + SHIFT_S},
        )
        for r in _requests(rng, 300)
    ]
    rows = {(row.stage, row.metric): row for row in compare(a, b, rng=random.Random(1))}
    vocoder = rows["vocoder", "p50"]
    assert vocoder.verdict == "B slower"
    assert vocoder.interval.low <= SHIFT_S * 1000 <= vocoder.interval.high
    assert rows["vocoder", "rtf"].interval.low > 0
    assert rows["acoustic", "p50"].verdict == NO_DIFFERENCE
    assert rows["acoustic", "p95"].verdict == NO_DIFFERENCE
    # The request p50 moves by the shift too, but its spread is 5x the vocoder's: it is
    # enough that the interval holds the truth.
    request = rows["request", "p50"].interval
    assert request.low <= SHIFT_S * 1000 <= request.high
    assert rows["request", "p50"].as_dict()["verdict"] == rows["request", "p50"].verdict


def test_with_no_shift_the_false_positive_rate_is_near_five_percent() -> None:
    """400 seeded trials of the p50 difference between two samples of one distribution.

    Expected 20 misses of zero (5%); the binomial sd is 4.4, so 8..34 is about +-2.8 sd:
    a correct bootstrap passes, one that is too narrow (or too wide) does not.
    """
    trials, size = 400, 40
    rng = random.Random(2024)
    misses = 0
    for _ in range(trials):
        a = [rng.lognormvariate(0, 0.5) for _ in range(size)]
        b = [rng.lognormvariate(0, 0.5) for _ in range(size)]
        (interval,) = bootstrap(
            size, size, [(percentile_of(a, 50), percentile_of(b, 50))], resamples=200, rng=rng
        )
        misses += not interval.covers_zero
    assert 8 <= misses <= 34, f"{misses} of {trials} intervals missed zero"


def test_the_point_estimates_are_the_plain_percentiles() -> None:
    rng = random.Random(3)
    a, b = _requests(rng, 50), _requests(rng, 60)
    rows = {(row.stage, row.metric): row for row in compare(a, b, resamples=50)}
    assert rows["request", "p95"].interval.a == percentile([r.seconds * 1000 for r in a], 95)
    assert rows["request", "p50"].interval.b == percentile([r.seconds * 1000 for r in b], 50)
    expected_rtf = sum(r.seconds for r in b) / sum(r.audio_seconds for r in b)
    assert abs(rows["request", "rtf"].interval.b - expected_rtf) < 1e-12


def test_too_few_requests_say_so() -> None:
    rows = compare(_requests(random.Random(1), 1), _requests(random.Random(2), 5))
    assert {row.verdict for row in rows} == {"too few requests"}
