"""Private by default, bounded labels, and bad values that never reach the service."""

from __future__ import annotations

import hashlib
import logging
import math

import pytest

import tts_otel
from tts_otel import semconv
from tts_otel._metric_buffer import MetricBuffer
from tts_otel.testing import TelemetryCapture, attributes, capture

SECRET = "我的银行卡号是6222020200112233445"


def _all_exported_strings(cap: TelemetryCapture) -> list[str]:
    values: list[str] = []
    for span in cap.spans():
        values += [str(v) for v in (attributes(span) or {}).values()]
    for metric in cap.metrics().values():
        for point in metric.data.data_points:
            values += [str(v) for v in attributes(point).values()]
    return values


def test_text_is_not_exported_by_default(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m", text=SECRET, prompt_text="another secret") as req:
        with req.stage("text_normalization"):
            pass
    exported = _all_exported_strings(cap)
    assert not any(SECRET in value or "another secret" in value for value in exported)
    root = cap.spans_named("tts.synthesize")[0]
    assert attributes(root)[semconv.ATTR_TEXT_CHARACTERS] == len(SECRET)


def test_text_recorded_when_asked(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m", text=SECRET, record_text=True):
        pass
    assert attributes(cap.spans_named("tts.synthesize")[0])[semconv.ATTR_TEXT] == SECRET


def test_text_hash_when_asked() -> None:
    with capture(record_text="hash") as cap:
        with tts_otel.synthesis(model="m", text=SECRET):
            pass
    root = attributes(cap.spans_named("tts.synthesize")[0])
    assert semconv.ATTR_TEXT not in root
    assert root[semconv.ATTR_TEXT_SHA256] == hashlib.sha256(SECRET.encode()).hexdigest()


def test_distinct_label_values_are_capped() -> None:
    with capture(max_attribute_values=3) as cap:
        for index in range(6):
            with tts_otel.synthesis(model=f"model-{index}"):
                pass
    points = cap.points(semconv.METRIC_REQUEST_DURATION)
    models = sorted(str(attributes(p)[semconv.ATTR_MODEL_NAME]) for p in points)
    assert models == ["model-0", "model-1", "model-2", "other"]
    other = cap.histogram(semconv.METRIC_REQUEST_DURATION, {semconv.ATTR_MODEL_NAME: "other"})
    assert other.count == 3
    # The span keeps the real value: only metric labels are bounded.
    names = {attributes(s)[semconv.ATTR_MODEL_NAME] for s in cap.spans_named("tts.synthesize")}
    assert "model-5" in names


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.audio(samples=math.nan),
        lambda r: r.audio(samples=-5),
        lambda r: r.audio(samples="many"),
        lambda r: r.audio(samples=100, sample_rate=0),
        lambda r: r.audio(seconds=math.inf),
        lambda r: r.chunk(1.5),
        lambda r: r.speech_tokens(-1),
        lambda r: r.speech_tokens(True),
    ],
    ids=["nan", "negative", "str", "zero-rate", "inf", "fraction", "neg-tokens", "bool"],
)
def test_invalid_values_are_dropped_and_counted_never_raised(call, caplog) -> None:  # type: ignore[no-untyped-def]
    with capture() as cap:
        with caplog.at_level(logging.WARNING, logger="tts_otel"):
            with tts_otel.synthesis(model="m", sample_rate=24000) as req:
                call(req)
                call(req)
        root = cap.spans_named("tts.synthesize")[0]
        assert semconv.ATTR_AUDIO_DURATION not in attributes(root)
        assert semconv.ATTR_SPEECH_TOKENS not in attributes(root)
        dropped = cap.counter(
            semconv.METRIC_TELEMETRY_DROPPED, {"tts.telemetry.signal": "invalid_value"}
        )
        assert dropped == 2
    warnings = [r for r in caplog.records if "tts-otel dropped" in r.getMessage()]
    assert len(warnings) == 1  # one warning per kind of problem, not per value


def test_full_metric_buffer_drops_oldest_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MetricBuffer, "DRAIN_INTERVAL_S", 3600.0)  # only collections drain
    with capture(metric_buffer_size=2) as cap:
        for _ in range(5):
            with tts_otel.synthesis(model="m"):
                pass
        # Nothing collected in between: three request batches (2 measurements each) fell out.
        assert cap.counter(semconv.METRIC_REQUESTS) == 2
        dropped = cap.counter(semconv.METRIC_TELEMETRY_DROPPED, {"tts.telemetry.signal": "metrics"})
        assert dropped == 6


def test_metrics_recorded_before_a_collection_are_all_seen(cap: TelemetryCapture) -> None:
    for batch in range(3):
        for _ in range(4):
            with tts_otel.synthesis(model="m"):
                pass
        assert cap.counter(semconv.METRIC_REQUESTS) == 4 * (batch + 1)
