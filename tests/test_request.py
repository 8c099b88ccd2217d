"""The request and stage API: span tree, attributes, metrics and their arithmetic."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import tts_otel
from tests.conftest import FakeClock
from tts_otel import semconv
from tts_otel.testing import TelemetryCapture, attributes, span_seconds


def _one(cap: TelemetryCapture, name: str):  # type: ignore[no-untyped-def]
    spans = cap.spans_named(name)
    assert len(spans) == 1, [s.name for s in cap.spans()]
    return spans[0]


def test_request_and_stage_spans_form_a_tree(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="glm-tts", sample_rate=24000, kv_cache=True, text="你好") as req:
        with req.stage("speaker_embedding"):
            pass
        with req.stage("acoustic"):
            with req.stage("acoustic.llm"):
                pass
            with req.stage("acoustic.flow"):
                pass
        with req.stage("vocoder"):
            pass

    root = _one(cap, "tts.synthesize")
    assert root.parent is None
    names = sorted(s.name for s in cap.children(root))
    assert names == ["tts.acoustic", "tts.speaker_embedding", "tts.vocoder"]
    acoustic = _one(cap, "tts.acoustic")
    assert sorted(s.name for s in cap.children(acoustic)) == [
        "tts.acoustic.flow",
        "tts.acoustic.llm",
    ]
    assert attributes(_one(cap, "tts.acoustic.llm"))[semconv.ATTR_STAGE] == "acoustic.llm"
    # Bounded configuration travels on stage spans too, for grouping in trace stores.
    vocoder = _one(cap, "tts.vocoder")
    assert attributes(vocoder)[semconv.ATTR_SAMPLE_RATE] == 24000
    assert attributes(vocoder)[semconv.ATTR_KV_CACHE] is True


def test_request_span_carries_gen_ai_and_config_attributes(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(
        model="glm-tts",
        model_version="1.2",
        sample_rate=32000,
        kv_cache=False,
        text="x" * 120,
        language="zh",
        prompt_text="参考文本",
    ):
        pass
    root = attributes(_one(cap, "tts.synthesize"))
    assert root[semconv.GEN_AI_OPERATION_NAME] == "text_to_speech"
    assert root[semconv.GEN_AI_REQUEST_MODEL] == "glm-tts"
    assert root[semconv.GEN_AI_OUTPUT_TYPE] == "speech"
    assert root[semconv.ATTR_MODEL_VERSION] == "1.2"
    assert root[semconv.ATTR_SAMPLE_RATE] == 32000
    assert root[semconv.ATTR_KV_CACHE] is False
    assert root[semconv.ATTR_TEXT_CHARACTERS] == 120
    assert root[semconv.ATTR_TEXT_LENGTH_BIN] == "long"
    assert root[semconv.ATTR_LANGUAGE] == "zh"
    assert root[semconv.ATTR_PROMPT_TEXT_PRESENT] is True


def test_request_is_child_of_callers_span(cap: TelemetryCapture) -> None:
    tracer = cap.telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("http.request") as outer:
        with tts_otel.synthesis(model="m", text="hi"):
            pass
    root = _one(cap, "tts.synthesize")
    assert root.parent is not None
    assert root.parent.span_id == outer.get_span_context().span_id


def test_segments_repeat_stages_with_index(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m", text="a, b") as req:
        for index in range(3):
            with req.segment(index), req.stage("vocoder"):
                pass
    indices = sorted(
        attributes(s)[semconv.ATTR_SEGMENT_INDEX] for s in cap.spans_named("tts.vocoder")
    )
    assert indices == [0, 1, 2]
    point = cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: "vocoder"})
    assert point.count == 3


@pytest.mark.parametrize(
    ("characters", "expected"),
    [(0, "short"), (49, "short"), (50, "medium"), (99, "medium"), (100, "long"), (5000, "long")],
)
def test_length_bins_have_documented_bounds(characters: int, expected: str) -> None:
    assert semconv.length_bin(characters) == expected


def test_durations_rtf_and_sizes_are_exact(cap: TelemetryCapture, clock: FakeClock) -> None:
    with tts_otel.synthesis(model="m", sample_rate=24000, text="x" * 60) as req:
        with req.stage("acoustic"):
            clock.advance(1.25)
        req.speech_tokens(50)
        with req.stage("vocoder"):
            clock.advance(0.5)
        req.audio(samples=48000)  # 2 s at the request's 24 kHz
        clock.advance(0.25)

    root = _one(cap, "tts.synthesize")
    assert attributes(root)[semconv.ATTR_AUDIO_DURATION] == 2.0
    assert attributes(root)[semconv.ATTR_REAL_TIME_FACTOR] == pytest.approx(2.0 / 2.0)
    assert attributes(root)[semconv.ATTR_SPEECH_TOKENS] == 50
    assert attributes(root)[semconv.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS] == 50
    assert attributes(root)[semconv.ATTR_TIME_TO_FIRST_AUDIO] == pytest.approx(1.75)

    config = {semconv.ATTR_TEXT_LENGTH_BIN: "medium", semconv.ATTR_MODEL_NAME: "m"}
    request = cap.histogram(semconv.METRIC_REQUEST_DURATION, config)
    assert request.count == 1
    assert request.sum == pytest.approx(2.0)
    acoustic = cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: "acoustic"})
    assert acoustic.sum == pytest.approx(1.25)
    assert cap.histogram(semconv.METRIC_REAL_TIME_FACTOR).sum == pytest.approx(1.0)
    assert cap.histogram(semconv.METRIC_AUDIO_DURATION).sum == 2.0
    assert cap.histogram(semconv.METRIC_TEXT_CHARACTERS).sum == 60
    assert cap.histogram(semconv.METRIC_SPEECH_TOKENS).sum == 50
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "ok"}) == 1


def test_audio_at_a_different_rate_and_in_seconds_add_up(
    cap: TelemetryCapture, clock: FakeClock
) -> None:
    with tts_otel.synthesis(model="m", sample_rate=24000) as req:
        req.audio(samples=32000, sample_rate=32000)
        req.audio(seconds=0.5)
        clock.advance(3.0)
    root = _one(cap, "tts.synthesize")
    assert attributes(root)[semconv.ATTR_AUDIO_DURATION] == 1.5
    assert attributes(root)[semconv.ATTR_REAL_TIME_FACTOR] == 2.0


def test_streaming_chunks_give_first_audio_and_gaps(
    cap: TelemetryCapture, clock: FakeClock
) -> None:
    with tts_otel.synthesis(model="m", sample_rate=24000, streaming=True) as req:
        clock.advance(0.3)
        req.chunk(12000)
        clock.advance(0.2)
        req.chunk(12000)
        clock.advance(0.1)
        req.chunk(24000)
    root = _one(cap, "tts.synthesize")
    assert attributes(root)[semconv.ATTR_TIME_TO_FIRST_AUDIO] == pytest.approx(0.3)
    assert attributes(root)[semconv.GEN_AI_TIME_TO_FIRST_CHUNK] == pytest.approx(0.3)
    assert attributes(root)[semconv.ATTR_AUDIO_CHUNKS] == 3
    assert attributes(root)[semconv.ATTR_AUDIO_DURATION] == 2.0
    gaps = cap.histogram(semconv.METRIC_CHUNK_INTERVAL, {semconv.ATTR_STREAMING: True})
    assert gaps.count == 2
    assert gaps.sum == pytest.approx(0.3)
    first = cap.histogram(semconv.METRIC_TIME_TO_FIRST_AUDIO)
    assert first.count == 1
    assert first.sum == pytest.approx(0.3)


def test_underrun_is_the_wait_of_a_listener_who_starts_at_the_first_chunk(
    cap: TelemetryCapture, clock: FakeClock
) -> None:
    # At 24 kHz: 1 s at t=0.5 plays until 1.5; 0.5 s at 1.2 extends it to 2.0;
    # 1 s at 2.5 arrives 0.5 s late (a stall) and plays until 3.5; 0.2 s at 3.0
    # is in time; 0.5 s at 4.0 is 0.3 s late after 3.7. Underrun 0.8 s, 2 stalls.
    arrivals = [(0.5, 24000), (1.2, 12000), (2.5, 24000), (3.0, 4800), (4.0, 12000)]
    with tts_otel.synthesis(model="m", sample_rate=24000, streaming=True) as req:
        start = clock.now
        for at, samples in arrivals:
            clock.now = start + at
            req.chunk(samples)
    root = attributes(_one(cap, "tts.synthesize"))
    assert root[semconv.ATTR_AUDIO_UNDERRUN] == pytest.approx(0.8)
    assert root[semconv.ATTR_AUDIO_STALLS] == 2
    underrun = cap.histogram(semconv.METRIC_AUDIO_UNDERRUN, {semconv.ATTR_STREAMING: True})
    assert underrun.count == 1
    assert underrun.sum == pytest.approx(0.8)
    assert cap.histogram(semconv.METRIC_AUDIO_STALLS).sum == 2


def test_chunks_in_time_have_no_underrun(cap: TelemetryCapture, clock: FakeClock) -> None:
    with tts_otel.synthesis(model="m", sample_rate=24000, streaming=True) as req:
        for _ in range(4):
            clock.advance(0.2)
            req.chunk(12000)  # 0.5 s of audio every 0.2 s
    root = attributes(_one(cap, "tts.synthesize"))
    assert root[semconv.ATTR_AUDIO_UNDERRUN] == 0.0
    assert root[semconv.ATTR_AUDIO_STALLS] == 0


def test_streaming_request_span_covers_the_audio(cap: TelemetryCapture) -> None:
    # A span that closes before the chunks are produced times a no-op
    # (a known failure of streaming instrumentation); this one covers them.
    import time

    with tts_otel.synthesis(model="m", sample_rate=24000, streaming=True) as req:
        for _ in range(3):
            time.sleep(0.01)
            req.chunk(240)
    root = _one(cap, "tts.synthesize")
    assert span_seconds(root) >= 0.03


def test_histograms_use_second_buckets_up_to_600s(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
        pass
    for name in (semconv.METRIC_REQUEST_DURATION, semconv.METRIC_STAGE_DURATION):
        point = cap.histogram(name)
        assert point.explicit_bounds == semconv.LATENCY_BUCKETS_S
        assert point.explicit_bounds[0] == 0.005
        assert point.explicit_bounds[-1] == 600.0
    metric = cap.metrics()[semconv.METRIC_STAGE_DURATION]
    assert metric.unit == "s"


def test_stage_outside_a_request_still_records(cap: TelemetryCapture) -> None:
    with tts_otel.stage("vocoder"):
        pass
    span = _one(cap, "tts.vocoder")
    assert attributes(span)[semconv.ATTR_STAGE] == "vocoder"
    assert cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: "vocoder"}).count == 1


def test_span_only_attributes_never_become_metric_labels(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m", attributes={"user.id": "u-123"}) as req:
        req.set_attribute("request.id", "r-1")
        with req.stage("vocoder"):
            pass
    root = _one(cap, "tts.synthesize")
    assert attributes(root)["user.id"] == "u-123"
    assert attributes(root)["request.id"] == "r-1"
    for metric in cap.metrics().values():
        for point in metric.data.data_points:
            assert set(attributes(point)) <= semconv.METRIC_ATTRIBUTE_KEYS | {
                semconv.ATTR_TELEMETRY_SIGNAL
            }, metric.name


def test_current_returns_the_active_request(cap: TelemetryCapture) -> None:
    assert tts_otel.current() is None
    with tts_otel.synthesis(model="m") as req:
        assert tts_otel.current() is req
    assert tts_otel.current() is None
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_request_exception_marks_error_and_propagates(cap: TelemetryCapture) -> None:
    class VocoderOOM(RuntimeError):
        pass

    error = VocoderOOM("out of memory")
    with pytest.raises(VocoderOOM) as raised:
        with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
            raise error
    assert raised.value is error

    expected_type = (
        f"{__name__}.test_request_exception_marks_error_and_propagates.<locals>.VocoderOOM"
    )
    for name in ("tts.vocoder", "tts.synthesize"):
        span = _one(cap, name)
        assert span.status.status_code is StatusCode.ERROR
        assert attributes(span)[semconv.ATTR_ERROR_TYPE] == expected_type
    assert any(e.name == "exception" for e in _one(cap, "tts.vocoder").events)
    errors = {semconv.ATTR_OUTCOME: "error", semconv.ATTR_ERROR_TYPE: expected_type}
    assert cap.counter(semconv.METRIC_REQUESTS, errors) == 1
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "ok"}) == 0
    stage = cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_ERROR_TYPE: expected_type})
    assert stage.count == 1


def test_builtin_exception_type_is_unqualified(cap: TelemetryCapture) -> None:
    with pytest.raises(ValueError, match="bad"):
        with tts_otel.synthesis(model="m"):
            raise ValueError("bad")
    assert attributes(_one(cap, "tts.synthesize"))[semconv.ATTR_ERROR_TYPE] == "ValueError"


def test_a_failing_finalizer_still_leaves_the_context_clean(cap: TelemetryCapture) -> None:
    def broken(_error: BaseException | None) -> None:
        raise RuntimeError("integration bug")

    with tts_otel.synthesis(model="m") as req:
        req.add_finalizer(broken)
        req.begin_segment(3)
    assert tts_otel.current() is None
    with tts_otel.stage("vocoder"):
        pass
    assert semconv.ATTR_SEGMENT_INDEX not in attributes(cap.spans_named("tts.vocoder")[0])
    assert trace.get_current_span() is trace.INVALID_SPAN
