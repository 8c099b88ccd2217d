"""The GLM-TTS instrumentor, driven through GLM-TTS's own entry points on the stand-ins.

The stand-ins (tests/glmtts_standin) reproduce what the real entry points do:
`jsonl_generate` and the web UI's `run_inference` do the prompt work before
`generate_long`, which seeds `random`, numpy and torch before every segment;
the script runs as `__main__`; `token2wav_stream` renders blocks inside one
call and returns the playable chunks at the end. Every number is checked
against what the entry points return or against clocks read around the call.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from tests.integrations.web_ui import click, served
from tts_otel import semconv
from tts_otel.integrations.glmtts import CONTRACT, GLMTTSInstrumentor
from tts_otel.integrations.glmtts import prologue as _prologue
from tts_otel.read.records import SpanRecord, from_otlp_json, from_sdk
from tts_otel.testing import capture

STANDIN = Path(__file__).parent.parent / "glmtts_standin"
STANDIN_MODULES = ("cosyvoice", "llm", "flow", "utils", "glmtts_inference", "tools")
EXAMPLES = [
    json.loads(line)
    for line in (STANDIN / "examples" / "example_zh.jsonl").read_text().splitlines()
]
PROMPT = "他当时还跟线下其他的站姐吵架。"
PROMPT_WAV = "examples/prompt/jiayan_zh.wav"


def _purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in STANDIN_MODULES:
            del sys.modules[name]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pytest.importorskip("torch")  # the stand-ins do small real torch work
    monkeypatch.chdir(STANDIN)  # GLM-TTS runs from its folder, where its example prompts are
    monkeypatch.setenv("TTS_STANDIN_LOAD_SECONDS", "0")
    sys.path.insert(0, str(STANDIN))
    try:
        yield
    finally:
        sys.path.remove(str(STANDIN))
        _purge()


@pytest.fixture
def instrumented(on_path: None) -> Iterator[GLMTTSInstrumentor]:
    """Instrumented before GLM-TTS is imported, as under opentelemetry-instrument."""
    instrumentor = GLMTTSInstrumentor()
    instrumentor.instrument(model_version="1.0")
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()


def _script() -> Any:
    """glmtts_inference imported, with the globals its __main__ block sets."""
    module: Any = importlib.import_module("glmtts_inference")
    module.frontend, module.text_frontend, _, module.llm, module.flow = module.load_models()
    return module


@pytest.fixture
def script(instrumented: GLMTTSInstrumentor, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The script's module, run from GLM-TTS's folder, as its README runs it."""
    monkeypatch.chdir(STANDIN)
    return _script()


# --- what a whole request looks like ------------------------------------------
def _traces(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    return by_trace


def _root(trace: list[SpanRecord]) -> SpanRecord:
    (root,) = [s for s in trace if s.name == semconv.SPAN_SYNTHESIZE]
    return root


def _named(trace: list[SpanRecord], name: str) -> list[SpanRecord]:
    return [s for s in trace if s.name == semconv.stage_span_name(name)]


def _check_whole_requests(spans: list[SpanRecord], requests: int) -> list[list[SpanRecord]]:
    """One trace per request, every span parented inside it, ids unique, the root spanning all."""
    assert len({s.span_id for s in spans}) == len(spans)
    traces = _traces(spans)
    assert len(traces) == requests
    for trace in traces.values():
        root = _root(trace)
        ids = {s.span_id for s in trace}
        assert all(s.parent_id in ids for s in trace if s is not root)
        assert all(root.start_ns <= s.start_ns and s.end_ns <= root.end_ns for s in trace)
        speaker = _named(trace, "speaker_embedding")
        assert len(speaker) == 1
        parts = sorted(s.name for s in trace if s.parent_id == speaker[0].span_id)
        assert parts == [
            "tts.speaker_embedding.speech_feat",
            "tts.speaker_embedding.speech_token",
            "tts.speaker_embedding.spk_embedding",
        ]
        # The request starts with its first piece of work: prompt normalisation.
        assert root.start_ns == min(s.start_ns for s in trace)
    return sorted(traces.values(), key=lambda t: _root(t).start_ns)


def _check_segments(trace: list[SpanRecord], normalized_text: str) -> int:
    segments = len(sys.modules["glmtts_inference"].text_frontend.split_by_len(normalized_text))
    for name in ("acoustic", "acoustic.llm", "acoustic.flow", "vocoder"):
        indexes = sorted(s.attributes[semconv.ATTR_SEGMENT_INDEX] for s in _named(trace, name))
        assert indexes == list(range(segments)), name
    root = _root(trace)
    tokens = sum(
        int(s.attributes[semconv.ATTR_SPEECH_TOKENS]) for s in _named(trace, "acoustic.llm")
    )
    assert root.attributes[semconv.ATTR_SPEECH_TOKENS] == tokens
    return tokens


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return float(wav.getnframes() / wav.getframerate())


# --- tests --------------------------------------------------------------------
def test_standins_keep_the_contract(on_path: None) -> None:
    for entry in CONTRACT:
        target: Any = importlib.import_module(entry.module)
        for part in entry.qualname.split("."):
            target = getattr(target, part)
        names = [p for p in inspect.signature(target).parameters if p != "self"]
        assert tuple(names[: len(entry.parameters)]) == entry.parameters, entry.qualname


def test_jsonl_generate_gives_one_whole_request_per_item(script: Any, tmp_path: Path) -> None:
    with capture() as cap:
        script.jsonl_generate("example_zh", str(tmp_path))
    traces = _check_whole_requests(list(from_sdk(cap.spans())), len(EXAMPLES))
    written = [
        json.loads(line) for line in (tmp_path / "text_compare.jsonl").read_text().splitlines()
    ]
    for trace, item, result in zip(traces, EXAMPLES, written, strict=True):
        root = _root(trace).attributes
        assert root[semconv.ATTR_TEXT_CHARACTERS] == len(item["syn_text"])  # the input, not TN
        assert root[semconv.ATTR_PROMPT_TEXT_PRESENT] is bool(item["prompt_text"])
        assert root[semconv.ATTR_MODEL_VERSION] == "1.0"
        assert root[semconv.ATTR_SAMPLE_RATE] == 24000
        seconds = _wav_seconds(tmp_path / f"{item['uttid']}.wav")
        assert root[semconv.ATTR_AUDIO_DURATION] == pytest.approx(seconds)
        duration = _root(trace).end_ns / 1e9 - _root(trace).start_ns / 1e9
        assert root[semconv.ATTR_REAL_TIME_FACTOR] == pytest.approx(duration / seconds, rel=1e-4)
        # The caller gets the audio when generate_long returns, at the request's end.
        assert root[semconv.ATTR_TIME_TO_FIRST_AUDIO] == pytest.approx(duration, abs=0.005)
        tokens = _check_segments(trace, result["syn_text"])
        assert seconds == pytest.approx(tokens * 2 * 480 / 24000)  # a token is two mel hops
        # Prompt and text normalisation and the split, before the segments.
        assert (
            len(
                [
                    s
                    for s in _named(trace, "text_normalization")
                    if semconv.ATTR_SEGMENT_INDEX not in s.attributes
                ]
            )
            == 3
        )
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "ok"}) == len(EXAMPLES)
    # Stage metrics carry the request's configuration, speaker embedding included.
    speaker = cap.histogram(
        semconv.METRIC_STAGE_DURATION,
        {
            semconv.ATTR_STAGE: "speaker_embedding",
            semconv.ATTR_MODEL_NAME: "glm-tts",
            semconv.ATTR_SAMPLE_RATE: 24000,
        },
    )
    assert speaker.count == len(EXAMPLES)


def test_an_item_whose_prompt_fails_is_a_failed_request_the_next_does_not_adopt(
    script: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An item whose prompt audio cannot be read fails before generate_long (jsonl_generate
    # logs it and goes on): it is a failed request, and the next item's request starts
    # with its own prompt work, not the failed item's.
    data = tmp_path / "examples"
    data.mkdir()
    broken = {**EXAMPLES[0], "uttid": "broken", "prompt_speech": "examples/prompt/missing.wav"}
    lines = [json.dumps(item, ensure_ascii=False) for item in (broken, EXAMPLES[1])]
    (data / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    (data / "prompt").symlink_to(STANDIN / "examples" / "prompt")
    monkeypatch.chdir(tmp_path)
    with capture() as cap:
        script.jsonl_generate("mixed", str(tmp_path))
    traces = sorted(_traces(list(from_sdk(cap.spans()))).values(), key=lambda t: _root(t).start_ns)
    failed, served = traces
    assert _root(failed).attributes[semconv.ATTR_ERROR_TYPE] == "FileNotFoundError"
    assert [s.name for s in failed if semconv.ATTR_ERROR_TYPE in s.attributes] == [
        "tts.speaker_embedding.speech_token",
        "tts.speaker_embedding",
        "tts.synthesize",
    ]
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "error"}) == 1
    _check_whole_requests(served, 1)
    prologue = [
        s
        for s in _named(served, "text_normalization")
        if semconv.ATTR_SEGMENT_INDEX not in s.attributes
    ]
    assert len(prologue) == 3  # its own prompt and text normalisation, and the split


def test_a_failing_item_is_one_failed_request_and_the_next_items_go_on(
    script: Any, tmp_path: Path
) -> None:
    class TokenOverflow(RuntimeError):
        pass

    script.llm.fail_with = TokenOverflow("too many tokens")
    with capture() as cap:
        script.jsonl_generate("example_zh", str(tmp_path))
    traces = _check_whole_requests(list(from_sdk(cap.spans())), len(EXAMPLES))
    for trace in traces:
        assert _root(trace).attributes[semconv.ATTR_ERROR_TYPE].endswith("TokenOverflow")
        assert _named(trace, "acoustic.llm")[0].attributes[semconv.ATTR_ERROR_TYPE]
    assert cap.counter(semconv.METRIC_REQUESTS, {semconv.ATTR_OUTCOME: "error"}) == len(EXAMPLES)


def _click(text: str) -> tuple[Any, float, float]:
    gradio_app: Any = sys.modules["tools.gradio_app"]
    before = time.time_ns()
    result = gradio_app.run_inference(PROMPT, PROMPT_WAV, text, 42, 24000)
    return result, before, time.time_ns()


def _serve_threads(texts: list[str]) -> list[tuple[Any, float, float]]:
    # Gradio runs each click in a worker thread with a copy of the server's context.
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(contextvars.copy_context().run, _click, t) for t in texts]
        return [f.result() for f in futures]


def _serve_asyncio(texts: list[str]) -> list[tuple[Any, float, float]]:
    async def main() -> list[tuple[Any, float, float]]:
        return list(await asyncio.gather(*(asyncio.to_thread(_click, t) for t in texts)))

    return asyncio.run(main())


@pytest.mark.parametrize("serve", [_serve_threads, _serve_asyncio], ids=["threads", "asyncio"])
def test_concurrent_web_ui_requests_keep_their_own_work(
    instrumented: GLMTTSInstrumentor,
    serve: Callable[[list[str]], list[tuple[Any, float, float]]],
) -> None:
    importlib.import_module("tools.gradio_app")
    texts = [EXAMPLES[i % len(EXAMPLES)]["syn_text"] + "好" * i for i in range(8)]
    with capture() as cap:
        results = serve(texts)
    traces = _check_whole_requests(list(from_sdk(cap.spans())), len(texts))
    by_characters = {_root(t).attributes[semconv.ATTR_TEXT_CHARACTERS]: t for t in traces}
    assert sorted(by_characters) == sorted(len(t) for t in texts)
    for text, ((rate, audio), before, after) in zip(texts, results, strict=True):
        trace = by_characters[len(text)]
        root = _root(trace)
        assert before <= root.start_ns
        assert root.end_ns <= after
        assert root.attributes[semconv.ATTR_AUDIO_DURATION] == pytest.approx(len(audio) / rate)
        assert len(_named(trace, "text_normalization")) >= 3  # prompt, text, split


def test_streaming_counts_the_audio_handed_to_the_caller(instrumented: GLMTTSInstrumentor) -> None:
    script = _script()
    frontend, text_frontend, llm, token2wav = (
        script.frontend,
        script.text_frontend,
        script.llm,
        script.flow,
    )
    text = EXAMPLES[2]["syn_text"]
    with capture() as cap:
        before = time.time_ns()
        prompt = text_frontend.text_normalize(PROMPT)
        normalized = text_frontend.text_normalize(text)
        prompt_tokens = frontend._extract_text_token(prompt + " ")
        speech_token = frontend._extract_speech_token([PROMPT_WAV])
        speech_feat = frontend._extract_speech_feat(PROMPT_WAV, sample_rate=24000)
        embedding = frontend._extract_spk_embedding(PROMPT_WAV)
        tokens = script.local_llm_forward(
            llm, prompt_tokens, frontend._extract_text_token(normalized), speech_token
        )
        called = time.time_ns()
        wav, _, _, chunks = token2wav.token2wav_stream(
            tokens, embedding=embedding, prompt_token_list=speech_token, prompt_feat_td=speech_feat
        )
        returned = time.time_ns()
    (trace,) = _check_whole_requests(list(from_sdk(cap.spans())), 1)
    root = _root(trace)
    attrs = root.attributes
    assert attrs[semconv.ATTR_STREAMING] is True
    assert attrs[semconv.ATTR_TEXT_CHARACTERS] == len(text)
    assert attrs[semconv.ATTR_PROMPT_TEXT_PRESENT] is True
    assert attrs[semconv.ATTR_SPEECH_TOKENS] == len(tokens)  # the LLM belongs to the request
    assert len(_named(trace, "acoustic.llm")) == 1
    assert before <= root.start_ns
    # Chunks are what the call returned, handed over when it returned.
    assert attrs[semconv.ATTR_AUDIO_CHUNKS] == len(chunks) > 1
    assert list(attrs[semconv.ATTR_AUDIO_CHUNK_SAMPLES]) == [len(c) for c in chunks]
    assert attrs[semconv.ATTR_AUDIO_DURATION] == wav.shape[-1] / 24000
    assert sum(len(c) for c in chunks) == wav.shape[-1]
    first_audio_ns = root.start_ns + attrs[semconv.ATTR_TIME_TO_FIRST_AUDIO] * 1e9
    assert called <= first_audio_ns <= returned + 1e6
    chunk_sizes = cap.histogram(semconv.METRIC_CHUNK_INTERVAL)
    assert chunk_sizes.count == len(chunks) - 1
    # Block-by-block rendering is kept, under names that say it is internal.
    blocks = sorted(s.attributes[semconv.ATTR_STREAM_BLOCK_INDEX] for s in _named(trace, "vocoder"))
    assert blocks == list(range(len(chunks)))
    assert (
        0 < attrs[semconv.ATTR_STREAM_FIRST_BLOCK_READY] < attrs[semconv.ATTR_TIME_TO_FIRST_AUDIO]
    )


def test_seeding_before_every_segment_repeats_no_id(script: Any, tmp_path: Path) -> None:
    with capture() as cap:
        script.jsonl_generate("example_zh", str(tmp_path))
        script.jsonl_generate("example_zh", str(tmp_path))
    spans = cap.spans()
    assert len({s.context.span_id for s in spans}) == len(spans)
    assert len({s.context.trace_id for s in spans}) == 2 * len(EXAMPLES)


def test_prompt_work_with_no_request_after_it_leaves_nothing_behind(
    instrumented: GLMTTSInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_prologue, "ADOPTION_GAP_S", 0.05)
    importlib.import_module("tools.gradio_app")
    script = _script()
    with capture() as cap:
        cached = script.frontend._extract_spk_embedding(PROMPT_WAV)  # a prompt cached at start-up
        assert cached is not None
        time.sleep(0.1)
        assert cap.spans() == []
        _click(EXAMPLES[0]["syn_text"])
    (trace,) = _check_whole_requests(list(from_sdk(cap.spans())), 1)
    assert len(_named(trace, "speaker_embedding.spk_embedding")) == 1


def test_suppressed_instrumentation_records_nothing(instrumented: GLMTTSInstrumentor) -> None:
    importlib.import_module("tools.gradio_app")
    with capture() as cap:
        with suppress_instrumentation():
            _click(EXAMPLES[0]["syn_text"])
    assert cap.spans() == []


def test_spans_not_recording_still_give_metrics_and_the_same_results(
    instrumented: GLMTTSInstrumentor,
) -> None:
    importlib.import_module("tools.gradio_app")
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    with capture(tracer_provider=sampled_out) as cap:
        (rate, audio), _, _ = _click(EXAMPLES[0]["syn_text"])
    assert cap.spans() == []
    duration = cap.histogram(semconv.METRIC_AUDIO_DURATION)
    assert duration.count == 1
    assert duration.sum == pytest.approx(len(audio) / rate)
    assert cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: "vocoder"}).count


def test_instrument_twice_and_uninstrument_twice_restore_the_originals(on_path: None) -> None:
    modules = {e.module: importlib.import_module(e.module) for e in CONTRACT}

    def originals() -> dict[str, Any]:
        found = {}
        for entry in CONTRACT:
            owner: Any = modules[entry.module]
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
    assert all(wrapped[name].__wrapped__ is before[name] for name in before)
    instrumentor.uninstrument()
    instrumentor.uninstrument()
    assert originals() == before
    importlib.import_module("tools.gradio_app")
    with capture() as cap:
        _click(EXAMPLES[0]["syn_text"])
    assert cap.spans() == []


def test_without_glmtts_it_stays_quiet_and_claims_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # opentelemetry-instrument loads every installed instrumentor for any app: where none
    # of GLM-TTS's modules exist, that is not worth a warning.
    _purge()
    instrumentor = GLMTTSInstrumentor()
    with caplog.at_level(logging.DEBUG, logger="tts_otel.integrations.glmtts"):
        instrumentor.instrument()
    try:
        (record,) = caplog.records
        assert record.levelno == logging.DEBUG
        message = record.getMessage()
        assert "nothing is instrumented" in message
        assert "glmtts_inference" in message
        assert not instrumentor.is_instrumented_by_opentelemetry
    finally:
        instrumentor.uninstrument()


def test_with_some_glmtts_modules_missing_it_warns_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _purge()
    (tmp_path / "glmtts_inference.py").write_text("")  # GLM-TTS's folder, half there
    monkeypatch.syspath_prepend(str(tmp_path))
    instrumentor = GLMTTSInstrumentor()
    with caplog.at_level(logging.WARNING, logger="tts_otel.integrations.glmtts"):
        instrumentor.instrument()
    try:
        (record,) = caplog.records
        message = record.getMessage()
        assert "the rest is instrumented" in message
        assert "PYTHONPATH" in message
        assert "cosyvoice.cli.frontend" in message
    finally:
        instrumentor.uninstrument()
        _purge()


def test_registered_for_opentelemetry_instrument() -> None:
    (entry,) = entry_points(group="opentelemetry_instrumentor", name="glmtts")
    assert entry.load() is GLMTTSInstrumentor
    (configurator,) = entry_points(group="opentelemetry_configurator", name="tts_otel")
    assert callable(configurator.load()().configure)


def _zero_code(cwd: Path, out: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`opentelemetry-instrument python ...` with only tts-otel installed, as the README says."""
    env = {
        **os.environ,
        "PYTHONPATH": str(STANDIN),
        "TTS_OTEL_EXPORTERS": "file",
        "TTS_OTEL_OUTPUT_DIR": str(out),
        "TTS_OTEL_MODEL_VERSION": "1.1",
        "TTS_OTEL_KV_CACHE": "false",
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    done = subprocess.run(
        [str(instrument), sys.executable, *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done


def _check_exported(out: Path, requests: int) -> list[list[SpanRecord]]:
    traces = _check_whole_requests(list(from_otlp_json(out / "traces.jsonl")), requests)
    for trace in traces:
        attrs = _root(trace).attributes
        assert attrs[semconv.ATTR_MODEL_VERSION] == "1.1"
        assert attrs[semconv.ATTR_KV_CACHE] is False
        assert attrs[semconv.ATTR_AUDIO_DURATION] > 0
        assert attrs[semconv.ATTR_SPEECH_TOKENS] > 0
    return traces


@pytest.mark.torch
def test_zero_code_script_run_as_main_gives_whole_requests(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "example_zh.jsonl").write_text(
        (STANDIN / "examples" / "example_zh.jsonl").read_text()
    )
    (tmp_path / "examples" / "prompt").symlink_to(STANDIN / "examples" / "prompt")
    out = tmp_path / "out"
    _zero_code(tmp_path, out, str(STANDIN / "glmtts_inference.py"), "--data", "example_zh")
    traces = _check_exported(out, len(EXAMPLES))
    for trace, item in zip(traces, EXAMPLES, strict=True):
        seconds = _wav_seconds(
            tmp_path / "outputs" / "pretrain_test" / "example_zh" / f"{item['uttid']}.wav"
        )
        assert _root(trace).attributes[semconv.ATTR_AUDIO_DURATION] == pytest.approx(seconds)
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "tts-otel"), "trace", str(out), "--last", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.count("tts.synthesize") == 2
    assert shown.stdout.count("  tts.speaker_embedding ") == 2
    assert "(segment 1)" in shown.stdout


DISTRO = Path(__file__).parent.parent.parent / ".cache" / "otel-distro"


@pytest.mark.torch
@pytest.mark.parametrize("configurator", [None, "tts_otel"], ids=["first-found", "tts_otel"])
def test_zero_code_beside_opentelemetry_distro_exports_each_request_once(
    tmp_path: Path, configurator: str | None
) -> None:
    """opentelemetry-instrument runs one configurator: the distro's (found first here) or
    tts-otel's; either way the requests are whole and exported once."""
    if not DISTRO.is_dir():
        pytest.fail("opentelemetry-distro is not in .cache/otel-distro: run `make test`")
    env = {
        "PYTHONPATH": f"{STANDIN}{os.pathsep}{DISTRO}",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    if configurator:
        env["OTEL_PYTHON_CONFIGURATOR"] = configurator
    log = tmp_path / "server.log"
    # Ctrl-C: gradio closes and the process exits, so the distro's SDK flushes at exit. (On
    # SIGTERM an SDK the distro set up loses what it holds: only tts-otel's flushes then.)
    with served(tmp_path / "out", log, env, stop=signal.SIGINT) as url:
        clicks = [click(url, text) for text in ("你好。", "我最爱吃人参果。", "再见。")]
    assert all(c.error is None for c in clicks)
    printed = log.read_text()
    assert printed.count('"name": "tts.synthesize"') == 3
    assert printed.count('"name": "tts.speaker_embedding"') == 3


@pytest.mark.torch
def test_readme_example_prints_the_span_tree() -> None:
    root = Path(__file__).parent.parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "glmtts_spans.py")],
        env={**os.environ, "PYTHONPATH": str(STANDIN)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=STANDIN,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].startswith("tts.synthesize")
    assert any(line.startswith("  tts.speaker_embedding ") for line in lines)
    for stage in ("tts.text_normalization", "tts.acoustic", "tts.vocoder"):
        segments = {
            line.split("(segment ")[1]
            for line in lines
            if line.strip().startswith(stage + " ") and "segment" in line
        }
        assert segments == {"0)", "1)"}, stage


def test_threads_do_not_share_prompt_work(instrumented: GLMTTSInstrumentor) -> None:
    importlib.import_module("tools.gradio_app")
    barrier = threading.Barrier(2)
    script = _script()

    def prompt_only() -> None:  # one thread prepares a prompt and never synthesises
        script.frontend._extract_spk_embedding(PROMPT_WAV)
        barrier.wait()

    with capture() as cap:
        other = threading.Thread(target=prompt_only)
        other.start()
        barrier.wait()
        _click(EXAMPLES[0]["syn_text"])
        other.join()
    (trace,) = _check_whole_requests(list(from_sdk(cap.spans())), 1)
    assert len(_named(trace, "speaker_embedding.spk_embedding")) == 1


@pytest.mark.parametrize(("raw", "expected"), [("", True), ("false", False), ("yes", True)])
def test_kv_cache_from_the_environment_where_empty_means_unset(
    on_path: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raw: str,
    expected: bool,
) -> None:
    monkeypatch.setenv("TTS_OTEL_KV_CACHE", raw)
    instrumentor = GLMTTSInstrumentor()
    with caplog.at_level(logging.WARNING, logger="tts_otel"):
        instrumentor.instrument()
    try:
        importlib.import_module("tools.gradio_app")
        with capture() as cap:
            _click(EXAMPLES[0]["syn_text"])
        (root,) = cap.spans_named(semconv.SPAN_SYNTHESIZE)
        assert dict(root.attributes or {})[semconv.ATTR_KV_CACHE] is expected
        assert not caplog.records
    finally:
        instrumentor.uninstrument()


def test_the_web_ui_imported_before_instrument_is_instrumented(on_path: None) -> None:
    # tools/gradio_app.py binds generate_long by name: imported first, it holds the original.
    gradio_app: Any = importlib.import_module("tools.gradio_app")
    instrumentor = GLMTTSInstrumentor()
    instrumentor.instrument()
    try:
        assert hasattr(gradio_app.generate_long, "__wrapped__")
        assert hasattr(gradio_app.run_inference, "__wrapped__")
        with capture() as cap:
            (rate, audio), _, _ = _click(EXAMPLES[0]["syn_text"])
        (trace,) = _check_whole_requests(list(from_sdk(cap.spans())), 1)
        assert _root(trace).attributes[semconv.ATTR_AUDIO_DURATION] == len(audio) / rate
    finally:
        instrumentor.uninstrument()
    assert not hasattr(gradio_app.generate_long, "__wrapped__")


def test_prompt_work_shared_by_two_requests_is_counted_once(
    instrumented: GLMTTSInstrumentor,
) -> None:
    script = _script()
    frontend, text_frontend = script.frontend, script.text_frontend

    def synthesize(text: str, prompt: dict[str, Any]) -> Any:
        cache = {
            **prompt["cache"],
            "cache_text": list(prompt["cache"]["cache_text"]),
            "cache_text_token": list(prompt["cache"]["cache_text_token"]),
            "cache_speech_token": list(prompt["cache"]["cache_speech_token"]),
        }
        return script.generate_long(
            frontend=frontend,
            text_frontend=text_frontend,
            llm=script.llm,
            flow=script.flow,
            text_info=["", text],
            cache=cache,
            embedding=prompt["embedding"],
            flow_prompt_token=prompt["flow_prompt_token"],
            speech_feat=prompt["speech_feat"],
            device=script.DEVICE,
        )

    async def main() -> None:
        speech_token = frontend._extract_speech_token([PROMPT_WAV])
        prompt_text = text_frontend.text_normalize(PROMPT) + " "
        prompt = {
            "cache": {
                "cache_text": [prompt_text],
                "cache_text_token": [frontend._extract_text_token(prompt_text)],
                "cache_speech_token": [speech_token.squeeze().tolist()],
            },
            "speech_feat": frontend._extract_speech_feat(PROMPT_WAV, sample_rate=24000),
            "embedding": frontend._extract_spk_embedding(PROMPT_WAV),
            "flow_prompt_token": speech_token.to(dtype=torch_int32()),
        }
        texts = [text_frontend.text_normalize(EXAMPLES[i]["syn_text"]) for i in (0, 1)]
        await asyncio.gather(*(asyncio.to_thread(synthesize, t, prompt) for t in texts))

    with capture() as cap:
        asyncio.run(main())
    spans = list(from_sdk(cap.spans()))
    traces = _traces(spans)
    assert len(traces) == 2
    speaker = [s for s in spans if s.name.startswith("tts.speaker_embedding.")]
    assert len(speaker) == 3  # each prompt call once: the token, the features, the embedding
    (adopting,) = [t for t in traces.values() if _named(t, "speaker_embedding")]
    (reusing,) = [t for t in traces.values() if not _named(t, "speaker_embedding")]
    assert semconv.ATTR_PROMPT_REUSED not in _root(adopting).attributes
    assert _root(reusing).attributes[semconv.ATTR_PROMPT_REUSED] is True
    calls = cap.histogram(
        semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: "speaker_embedding.spk_embedding"}
    )
    assert calls.count == 1


def torch_int32() -> Any:
    import torch

    return torch.int32


def test_resynthesis_from_speech_tokens_is_a_request_of_its_own_kind(
    instrumented: GLMTTSInstrumentor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy

    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for index, count in enumerate((60, 110)):
        numpy.save(tokens / f"utt{index}.npy", numpy.arange(count) % 1000)
    out = tmp_path / "recon"
    reconstruct: Any = importlib.import_module("tools.flow_reconstruct")
    monkeypatch.setattr(
        sys,
        "argv",
        ["flow_reconstruct.py", "-i", str(tokens), "-o", str(out), "-p", str(STANDIN / PROMPT_WAV)],
    )
    with capture() as cap:
        reconstruct.main()
    spans = list(from_sdk(cap.spans()))
    requests = sorted(
        (s for s in spans if s.name == semconv.SPAN_SYNTHESIZE), key=lambda s: s.start_ns
    )
    assert len(requests) == 2
    for index, request in enumerate(requests):
        assert request.attributes[semconv.ATTR_REQUEST_KIND] == semconv.REQUEST_KIND_RESYNTHESIS
        seconds = _wav_seconds(out / f"utt{index}.wav")
        assert request.attributes[semconv.ATTR_AUDIO_DURATION] == seconds
        names = sorted(s.name for s in spans if s.trace_id == request.trace_id)
        assert "tts.acoustic.flow" in names
        assert "tts.vocoder" in names
        assert "tts.acoustic.llm" not in names
    kind = {semconv.ATTR_REQUEST_KIND: semconv.REQUEST_KIND_RESYNTHESIS}
    assert cap.counter(semconv.METRIC_REQUESTS, kind) == 2


def test_the_providers_given_to_instrument_receive_the_requests(on_path: None) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = GLMTTSInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        importlib.import_module("tools.gradio_app")
        with capture() as cap:
            _click(EXAMPLES[0]["syn_text"])
        assert cap.spans() == []
    finally:
        instrumentor.uninstrument()
    names = {span.name for span in spans.get_finished_spans()}
    assert {"tts.synthesize", "tts.vocoder", "tts.speaker_embedding"} <= names
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert semconv.METRIC_REQUEST_DURATION in metrics
