"""The reference workload: its front end, its stages, and its arithmetic."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tts_otel import semconv  # noqa: E402
from tts_otel.reference import (  # noqa: E402
    ReferencePipeline,
    models,
    text,
)
from tts_otel.testing import TelemetryCapture, attributes, span_seconds  # noqa: E402


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("共1010元", "共一千零一十元"),
        ("增长了35%", "增长了百分之三十五"),
        ("2024年", "二零二四年"),
        ("温度23.5度", "温度二十三点五度"),
        ("第100000名", "第十万名"),
        ("I have 21 cats", "I have twenty-one cats"),
        ("Dr. Li", "Doctor Li"),
        ("the API and GPUs", "the A P I and G P Us"),
        ("ＡＩ语音", "A I语音"),
    ],
)
def test_normalization_reads_numbers_and_abbreviations(raw: str, spoken: str) -> None:
    assert text.normalize(raw) == spoken


def test_language_detection() -> None:
    assert text.language("你好") == "zh"
    assert text.language("hello") == "en"
    assert text.language("你好 hello") == "mixed"


def test_segments_stay_within_bounds_and_keep_all_text() -> None:
    source = (
        "今天天气很好，我们去公园散步吧！然后去吃饭，好吗？" * 4
        + "The AI model said hello to everyone."
    )
    segments = text.split_segments(source, min_len=10, max_len=30)
    assert all(len(s) <= 30 for s in segments)
    assert "".join(segments).replace(" ", "") == source.replace(" ", "")


def test_vocoder_hop_follows_the_sample_rate() -> None:
    assert models.Vocoder(24_000).hop == 480
    assert models.Vocoder(32_000).hop == 640


@pytest.fixture(scope="module")
def pipeline() -> ReferencePipeline:
    return ReferencePipeline(flow_steps=2)


def test_a_request_records_every_stage_per_segment(
    pipeline: ReferencePipeline, cap: TelemetryCapture
) -> None:
    sample = "今天天气很好，我们去公园散步吧！然后去吃饭，好吗？" * 2
    segments = text.split_segments(sample)
    wav = pipeline.synthesize(sample)

    root = cap.spans_named(semconv.SPAN_SYNTHESIZE)[0]
    assert attributes(root)[semconv.ATTR_LANGUAGE] == "zh"
    assert len(cap.spans_named("tts.speaker_embedding")) == 1
    for name in (
        "tts.text_normalization",
        "tts.acoustic",
        "tts.acoustic.llm",
        "tts.acoustic.flow",
        "tts.vocoder",
    ):
        spans = cap.spans_named(name)
        assert sorted(attributes(s)[semconv.ATTR_SEGMENT_INDEX] for s in spans) == list(
            range(len(segments))
        )
    # 25 speech tokens per second, 2 mel frames per token, one hop per frame:
    # the audio is exactly tokens / 25 seconds long.
    tokens = attributes(root)[semconv.ATTR_SPEECH_TOKENS]
    assert attributes(root)[semconv.ATTR_AUDIO_DURATION] == pytest.approx(tokens / 25)
    assert wav.shape[0] == tokens * 2 * 480


def test_streaming_hands_out_chunks_in_growing_blocks(
    pipeline: ReferencePipeline, cap: TelemetryCapture
) -> None:
    pipeline.synthesize("The quick brown fox jumps over the lazy dog, twice over.", streaming=True)
    root = cap.spans_named(semconv.SPAN_SYNTHESIZE)[0]
    tokens = attributes(root)[semconv.ATTR_SPEECH_TOKENS]
    assert attributes(root)[semconv.ATTR_STREAMING] is True
    assert attributes(root)[semconv.ATTR_AUDIO_CHUNKS] >= 2
    assert attributes(root)[semconv.ATTR_AUDIO_DURATION] == pytest.approx(tokens / 25)
    assert 0 < attributes(root)[semconv.ATTR_TIME_TO_FIRST_AUDIO] < span_seconds(root)
    gaps = cap.histogram(semconv.METRIC_CHUNK_INTERVAL)
    assert gaps.count == attributes(root)[semconv.ATTR_AUDIO_CHUNKS] - 1


def test_kv_cache_does_not_change_the_tokens() -> None:
    text_tokens = torch.tensor([[1, 2, 3, 4]])
    speaker = torch.zeros(1, models.SPEAKER_DIM)
    torch.manual_seed(0)
    llm = models.SpeechLM().eval()

    def run(kv_cache: bool) -> list[int]:
        generator = torch.Generator().manual_seed(7)
        return llm.generate(text_tokens, speaker, 20, kv_cache, generator).tolist()

    assert run(True) == run(False)


def test_injected_latency_lands_in_the_named_stage(cap: TelemetryCapture) -> None:
    pipeline = ReferencePipeline(flow_steps=1, inject_latency={"vocoder": 0.05})
    pipeline.synthesize("你好。")
    vocoder = cap.spans_named("tts.vocoder")[0]
    assert span_seconds(vocoder) >= 0.05


def test_unsupported_sample_rate_is_rejected() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        ReferencePipeline(sample_rate=16_000)
