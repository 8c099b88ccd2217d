"""The GLM-TTS instrumentor against stand-ins with GLM-TTS's import paths and signatures."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import tts_otel  # noqa: E402
from tts_otel import semconv  # noqa: E402
from tts_otel.integrations.glmtts import CONTRACT, GLMTTSInstrumentor  # noqa: E402
from tts_otel.testing import TelemetryCapture, attributes, capture  # noqa: E402

STANDIN = Path(__file__).parent / "glmtts_standin"
STANDIN_MODULES = ("cosyvoice", "llm", "flow", "utils", "glmtts_inference")
TEXT = "今天天气很好，我们去公园散步吧！然后去吃饭，好吗？" * 4


def _purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in STANDIN_MODULES:
            del sys.modules[name]


@pytest.fixture
def standin() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(STANDIN))
    try:
        yield {entry.module: importlib.import_module(entry.module) for entry in CONTRACT}
    finally:
        sys.path.remove(str(STANDIN))
        _purge()


@pytest.fixture
def instrumented(standin: dict[str, ModuleType]) -> Iterator[dict[str, ModuleType]]:
    instrumentor = GLMTTSInstrumentor()
    instrumentor.instrument(model_version="1.0")
    try:
        yield standin
    finally:
        instrumentor.uninstrument()


class Pipeline:
    """Builds stand-in objects the way glmtts_inference.load_models wires the real ones."""

    def __init__(self, modules: dict[str, ModuleType], sample_rate: int = 24000) -> None:
        frontend_module = modules["cosyvoice.cli.frontend"]
        self.text_frontend = frontend_module.TextFrontEnd()
        self.frontend = frontend_module.TTSFrontEnd(
            lambda text: [ord(c) % 1000 for c in text], None,
            lambda wav: torch.zeros(1, 150, 80), "campplus.onnx",
        )  # fmt: skip
        self.llm = modules["llm.glmtts"].GLMTTS()
        flow = modules["flow.flow"].Flow()
        self.token2wav = modules["utils.tts_model_util"].Token2Wav(
            flow, sample_rate=sample_rate, device="cpu"
        )
        self.inference = modules["glmtts_inference"]

    def prompt(self) -> tuple[dict[str, Any], Any, Any, Any]:
        embedding = self.frontend._extract_spk_embedding("prompt.wav")
        speech_token = self.frontend._extract_speech_token(["prompt.wav"])
        speech_feat = self.frontend._extract_speech_feat("prompt.wav", sample_rate=24000)
        cache = {
            "cache_text": ["参考文本"],
            "cache_text_token": [self.frontend._extract_text_token("参考文本")],
            "cache_speech_token": [speech_token.squeeze().tolist()],
            "use_cache": True,
        }
        return cache, embedding, speech_token, speech_feat

    def generate(self, text: str = TEXT, *, positional: bool = False) -> Any:
        cache, embedding, speech_token, speech_feat = self.prompt()
        if positional:
            wav, _, _, _ = self.inference.generate_long(
                self.frontend, self.text_frontend, self.llm, self.token2wav, ["utt", text],
                cache, "cpu", embedding, 0, "ras", speech_token, speech_feat,
            )  # fmt: skip
        else:
            wav, _, _, _ = self.inference.generate_long(
                frontend=self.frontend, text_frontend=self.text_frontend, llm=self.llm,
                flow=self.token2wav, text_info=["utt", text], cache=cache, device="cpu",
                embedding=embedding, flow_prompt_token=speech_token, speech_feat=speech_feat,
            )  # fmt: skip
        return wav


def test_standins_keep_the_contract(standin: dict[str, ModuleType]) -> None:
    for entry in CONTRACT:
        target: Any = standin[entry.module]
        for part in entry.qualname.split("."):
            target = getattr(target, part)
        names = [p for p in inspect.signature(target).parameters if p != "self"]
        assert tuple(names[: len(entry.parameters)]) == entry.parameters, entry.qualname


def _stage_spans(cap: TelemetryCapture, name: str) -> list[Any]:
    return cap.spans_named(semconv.stage_span_name(name))


@pytest.mark.parametrize("positional", [False, True], ids=["keywords", "positional"])
def test_generate_long_becomes_a_request_with_stages_per_segment(
    instrumented: dict[str, ModuleType], positional: bool
) -> None:
    pipeline = Pipeline(instrumented)
    segments = len(pipeline.text_frontend.split_by_len(TEXT))
    assert segments >= 2
    with capture() as cap:
        wav = pipeline.generate(positional=positional)

    roots = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert len(roots) == 1
    root = attributes(roots[0])
    assert root[semconv.ATTR_MODEL_NAME] == "glm-tts"
    assert root[semconv.ATTR_MODEL_VERSION] == "1.0"
    assert root[semconv.ATTR_SAMPLE_RATE] == 24000
    assert root[semconv.ATTR_KV_CACHE] is True
    assert root[semconv.ATTR_TEXT_CHARACTERS] == len(TEXT)
    assert root[semconv.ATTR_PROMPT_TEXT_PRESENT] is True
    assert root[semconv.ATTR_AUDIO_DURATION] == pytest.approx(wav.shape[-1] / 24000)

    per_segment = {
        name: sorted(
            attributes(s).get(semconv.ATTR_SEGMENT_INDEX, -1) for s in _stage_spans(cap, name)
        )
        for name in ("acoustic", "acoustic.llm", "acoustic.flow", "vocoder")
    }
    assert per_segment == {name: list(range(segments)) for name in per_segment}
    normalization = sorted(
        attributes(s).get(semconv.ATTR_SEGMENT_INDEX, -1)
        for s in _stage_spans(cap, "text_normalization")
    )
    assert normalization == [-1, *range(segments)]  # the split, then one per segment

    # llm and flow hang under their segment's acoustic span, which ends with the flow.
    for acoustic in _stage_spans(cap, "acoustic"):
        children = cap.children(acoustic)
        assert sorted(c.name for c in children) == ["tts.acoustic.flow", "tts.acoustic.llm"]
        flow = next(c for c in children if c.name == "tts.acoustic.flow")
        assert acoustic.end_time == pytest.approx(flow.end_time, abs=2_000_000)
        assert acoustic.parent.span_id == roots[0].context.span_id
    llm = attributes(_stage_spans(cap, "acoustic.llm")[0])
    assert llm[semconv.ATTR_TOKENS_PER_SECOND] > 0
    tokens = sum(
        attributes(s)[semconv.ATTR_SPEECH_TOKENS] for s in _stage_spans(cap, "acoustic.llm")
    )
    assert root[semconv.ATTR_SPEECH_TOKENS] == tokens
    # One token is two mel frames is two hops: the audio follows from the tokens.
    assert wav.shape[-1] == tokens * 2 * 480

    stage_counts = {
        name: cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: name}).count
        for name in ("acoustic", "vocoder")
    }
    assert stage_counts == {"acoustic": segments, "vocoder": segments}
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "ok"}) == 1


def test_inside_an_active_request_it_joins_and_groups_the_speaker_stage(
    instrumented: dict[str, ModuleType],
) -> None:
    pipeline = Pipeline(instrumented)
    with capture() as cap:
        with tts_otel.synthesis(model="glm-tts", sample_rate=24000, text=TEXT):
            pipeline.generate()
    assert len(cap.spans_named(semconv.SPAN_SYNTHESIZE)) == 1
    speaker = _stage_spans(cap, "speaker_embedding")
    assert len(speaker) == 1
    children = sorted(c.name for c in cap.children(speaker[0]))
    assert children == [
        "tts.speaker_embedding.speech_feat",
        "tts.speaker_embedding.speech_token",
        "tts.speaker_embedding.spk_embedding",
    ]
    first_text = min(s.start_time for s in _stage_spans(cap, "text_normalization"))
    assert speaker[0].end_time <= first_text


def test_a_failing_stage_raises_the_same_exception_and_marks_errors(
    instrumented: dict[str, ModuleType],
) -> None:
    class TokenOverflow(RuntimeError):
        pass

    pipeline = Pipeline(instrumented)
    failure = TokenOverflow("too many tokens")
    pipeline.llm.fail_with = failure
    with capture() as cap:
        with pytest.raises(TokenOverflow) as raised:
            pipeline.generate()
    assert raised.value is failure
    for name in ("tts.acoustic.llm", "tts.acoustic", "tts.synthesize"):
        spans = cap.spans_named(name)
        assert len(spans) == 1, name
        assert spans[0].status.status_code.name == "ERROR", name
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "error"}) == 1


def test_streaming_gives_chunks_and_time_to_first_audio(
    instrumented: dict[str, ModuleType],
) -> None:
    pipeline = Pipeline(instrumented, sample_rate=32000)
    tokens = list(range(300))
    _, speech_token, speech_feat = pipeline.prompt()[1:]
    with capture() as cap:
        wav, _, _, pieces = pipeline.token2wav.token2wav_stream(
            tokens,
            embedding=torch.zeros(1, 192),
            prompt_token_list=speech_token,
            prompt_feat_td=speech_feat,
        )
    root = attributes(cap.spans_named(semconv.SPAN_SYNTHESIZE)[0])
    assert root[semconv.ATTR_STREAMING] is True
    assert root[semconv.ATTR_SAMPLE_RATE] == 32000
    assert root[semconv.ATTR_AUDIO_CHUNKS] == len(pieces) == 4  # blocks of 25, 50, 200, 25
    assert root[semconv.ATTR_AUDIO_DURATION] == pytest.approx(wav.shape[-1] / 32000)
    assert root[semconv.ATTR_TIME_TO_FIRST_AUDIO] > 0
    assert cap.histogram(semconv.METRIC_CHUNK_INTERVAL).count == 3
    assert len(_stage_spans(cap, "vocoder")) == 4


def test_instrument_is_idempotent_and_uninstrument_restores_originals(
    standin: dict[str, ModuleType],
) -> None:
    def originals() -> dict[str, Any]:
        found = {}
        for entry in CONTRACT:
            owner: Any = standin[entry.module]
            *path, attribute = entry.qualname.split(".")
            for part in path:
                owner = getattr(owner, part)
            found[entry.qualname] = inspect.getattr_static(owner, attribute)
        return found

    before = originals()
    instrumentor = GLMTTSInstrumentor()
    instrumentor.instrument()
    instrumentor.instrument()  # warns, does not wrap twice
    wrapped = originals()
    assert all(wrapped[name] is not before[name] for name in before)
    assert all(wrapped[name].__wrapped__ is before[name] for name in before)
    with capture() as cap:
        Pipeline(standin).generate()
    assert len(cap.spans_named("tts.acoustic.llm")) == len(_stage_spans(cap, "acoustic"))
    instrumentor.uninstrument()
    instrumentor.uninstrument()
    assert originals() == before
    with capture() as cap:
        Pipeline(standin).generate()
    assert cap.spans() == []


def test_without_glmtts_it_logs_once_and_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    _purge()
    instrumentor = GLMTTSInstrumentor()
    with caplog.at_level(logging.INFO, logger="tts_otel.integrations.glmtts"):
        instrumentor.instrument()
    try:
        assert len(caplog.records) == 1
        assert "nothing instrumented" in caplog.records[0].getMessage()
    finally:
        instrumentor.uninstrument()


def test_registered_for_opentelemetry_instrument() -> None:
    (entry,) = entry_points(group="opentelemetry_instrumentor", name="glmtts")
    assert entry.load() is GLMTTSInstrumentor


def test_opentelemetry_instrument_picks_it_up(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "import tts_otel\n"
        "from tests.test_glmtts import Pipeline, STANDIN_MODULES\n"
        "import importlib\n"
        "from tts_otel.integrations.glmtts import CONTRACT\n"
        "telemetry = tts_otel.configure(exporters='file')\n"
        "Pipeline({e.module: importlib.import_module(e.module) for e in CONTRACT}).generate()\n"
        "telemetry.shutdown()\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(STANDIN),
        "TTS_OTEL_OUTPUT_DIR": str(tmp_path / "out"),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    done = subprocess.run(
        [str(instrument), sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    traces = (tmp_path / "out" / "traces.jsonl").read_text()
    assert '"tts.synthesize"' in traces
    assert '"tts.acoustic.llm"' in traces


def test_readme_example_prints_the_span_tree() -> None:
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "glmtts_spans.py")],
        env={**os.environ, "PYTHONPATH": str(STANDIN)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("tts.synthesize")
    for stage in ("tts.text_normalization", "tts.acoustic", "tts.vocoder"):
        segments = {
            line.split("(segment ")[1]
            for line in lines
            if line.strip().startswith(stage + " ") and "segment" in line
        }
        assert segments == {"0)", "1)"}, stage
    assert any(line.startswith("  tts.speaker_embedding ") for line in lines)
