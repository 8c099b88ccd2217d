"""GLM-TTS instrumentor: spans and metrics for GLM-TTS's own classes, without touching its code.

    from tts_otel.integrations.glmtts import GLMTTSInstrumentor

    tts_otel.configure(exporters="otlp")
    GLMTTSInstrumentor().instrument(model_version="1.0")
    import glmtts_inference  # import after instrument() if you bind names with `from ... import`

``glmtts_inference.generate_long`` becomes the ``tts.synthesize`` request
(or joins one you opened with ``tts_otel.synthesis``); each text segment gets
its own ``text_normalization``, ``acoustic`` (``acoustic.llm``,
``acoustic.flow``) and ``vocoder`` spans. ``opentelemetry-instrument`` finds
it through the ``opentelemetry_instrumentor`` entry point.

GLM-TTS calls the LLM, then ``Token2Wav`` runs flow and vocoder: the
``acoustic`` stage therefore spans two separate calls. It opens with its
first child, is never made current, and ends when its last child ended,
once a stage outside it starts or the request ends.
"""

from __future__ import annotations

import importlib
import logging
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from tts_otel import semconv
from tts_otel.request import Synthesis, current, synthesis
from tts_otel.stages import Stage

_log = logging.getLogger(__name__)

MODEL_NAME = "glm-tts"
ATTR_CODE_FUNCTION = "code.function.name"


@dataclass(frozen=True)
class Wrapped:
    """One wrapped GLM-TTS callable and the parameters (after ``self``) the wrapper relies on."""

    module: str
    qualname: str
    parameters: tuple[str, ...]
    kind: str
    sample_rate: int | None = None  # vocoders: the rate their output is at


# The contract with GLM-TTS: what is wrapped, by import path, and which
# parameter names and positions the wrappers read. tests/test_glmtts.py
# fails when the stand-ins (kept to GLM-TTS's signatures) drift from it.
CONTRACT: tuple[Wrapped, ...] = (
    Wrapped("cosyvoice.cli.frontend", "TextFrontEnd.text_normalize", ("text",), "normalize"),
    Wrapped("cosyvoice.cli.frontend", "TextFrontEnd.split_by_len",
            ("text", "min_text_len", "max_text_len"), "text"),
    Wrapped("cosyvoice.cli.frontend", "TextFrontEnd.g2p_infer", ("text",), "text"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_spk_embedding", ("speech",), "speaker"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_speech_token",
            ("path_or_tuple",), "speaker"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_speech_feat",
            ("speech", "sample_rate"), "speaker"),
    Wrapped("llm.glmtts", "GLMTTS.inference",
            ("text", "text_len", "prompt_text", "prompt_text_len", "prompt_speech_token",
             "prompt_speech_token_len"), "llm"),
    Wrapped("flow.flow", "Flow.inference_with_cache",
            ("token", "prompt_token", "prompt_feat", "embedding", "n_timesteps"), "flow"),
    Wrapped("utils.hift_util", "HiFTInference.__call__", ("mel",), "vocoder", 24_000),
    Wrapped("utils.vocos_util", "Vocos2DInference.__call__", ("xs_mel_tr",), "vocoder", 32_000),
    Wrapped("utils.tts_model_util", "Token2Wav.token2wav_stream",
            ("syn_token", "block_sizes", "look_future_sizes", "fade_sec", "embedding"), "stream"),
    Wrapped("glmtts_inference", "generate_long",
            ("frontend", "text_frontend", "llm", "flow", "text_info", "cache", "device",
             "embedding"), "request"),
)  # fmt: skip

_GROUPS = {"speaker": semconv.STAGE_SPEAKER_EMBEDDING, "llm": semconv.STAGE_ACOUSTIC,
           "flow": semconv.STAGE_ACOUSTIC}  # fmt: skip
_CHILD_STAGES = {
    "TTSFrontEnd._extract_spk_embedding": "speaker_embedding.spk_embedding",
    "TTSFrontEnd._extract_speech_token": "speaker_embedding.speech_token",
    "TTSFrontEnd._extract_speech_feat": "speaker_embedding.speech_feat",
    "GLMTTS.inference": semconv.STAGE_ACOUSTIC_LLM,
    "Flow.inference_with_cache": semconv.STAGE_ACOUSTIC_FLOW,
}


def argument(entry: Wrapped, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """A wrapped call's argument by name, whether passed by keyword or by position."""
    if name in kwargs:
        return kwargs[name]
    position = entry.parameters.index(name)
    return args[position] if position < len(args) else None


def _length(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[-1])
    return len(value) if isinstance(value, list) else None


class _RequestState:
    """What the wrappers of one request share: the open group stage, segment, streaming."""

    def __init__(self, request: Synthesis) -> None:
        self.request = request
        self.group: Stage | None = None
        self.group_ended_at = 0.0
        self.segment: int | None = None
        self.streaming = False
        self.emitted_samples = 0
        request.add_finalizer(self.close_group)

    def close_group(self, error: BaseException | None = None) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.end(error, at=self.group_ended_at)

    def child_of(self, group_name: str) -> Stage:
        if self.group is None or self.group.name != group_name:
            self.close_group()
            self.group = self.request.stage(group_name).start(current=False)
        return self.group


class _States:
    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[Synthesis, _RequestState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def of(self, request: Synthesis) -> _RequestState:
        with self._lock:
            state = self._states.get(request)
            if state is None:
                state = self._states[request] = _RequestState(request)
            return state


class GLMTTSInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps the callables in :data:`CONTRACT`; ``uninstrument()`` restores them exactly.

    ``instrument(model_version=..., kv_cache=...)`` sets attributes GLM-TTS
    does not expose (its LLM always decodes with a KV cache, so
    ``kv_cache`` defaults to ``True``).
    """

    # BaseInstrumentor is a singleton whose __init__ runs on every
    # GLMTTSInstrumentor() call: state is set in _instrument, not there.
    _wrapped: list[Wrapped]
    _states: _States
    _model_version: str | None
    _kv_cache: bool | None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # GLM-TTS is not a pip package: nothing to check

    def _instrument(self, **kwargs: Any) -> None:
        self._model_version = kwargs.get("model_version")
        self._kv_cache = kwargs.get("kv_cache", True)
        self._states = _States()
        self._wrapped = []
        missing = []
        for entry in CONTRACT:
            try:
                module = importlib.import_module(entry.module)
            except ImportError:
                missing.append(entry.module)
                continue
            wrapt.wrap_function_wrapper(module, entry.qualname, self._wrapper(entry))
            self._wrapped.append(entry)
        if missing:
            _log.info(
                "tts-otel: GLM-TTS modules not importable (%s); %s",
                ", ".join(sorted(set(missing))),
                "nothing instrumented" if not self._wrapped else "the rest is instrumented",
            )

    def _uninstrument(self, **kwargs: Any) -> None:
        for entry in self._wrapped:
            owner: Any = importlib.import_module(entry.module)
            *path, attribute = entry.qualname.split(".")
            for name in path:
                owner = getattr(owner, name)
            unwrap(owner, attribute)
        self._wrapped.clear()

    # --- wrappers -----------------------------------------------------------
    def _wrapper(self, entry: Wrapped) -> Callable[..., Any]:
        run = getattr(self, "_" + entry.kind)

        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            if not is_instrumentation_enabled():
                return wrapped(*args, **kwargs)
            return run(entry, wrapped, instance, args, kwargs)

        return wrapper

    def _plain_stage(
        self, entry: Wrapped, name: str, wrapped: Callable[..., Any], args: Any, kwargs: Any
    ) -> Any:
        request = current()
        if request is not None:
            self._states.of(request).close_group()
        with Stage(name) as stage:
            stage.set_attribute(ATTR_CODE_FUNCTION, entry.qualname)
            return wrapped(*args, **kwargs)

    def _normalize(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is not None:
            state = self._states.of(request)
            if state.segment is not None:
                # Inside generate_long each normalisation starts the next segment.
                state.segment += 1
                request.begin_segment(state.segment)
        return self._plain_stage(entry, semconv.STAGE_TEXT_NORMALIZATION, wrapped, args, kw)

    def _text(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Splitting and g2p: text normalisation work outside the per-segment count."""
        return self._plain_stage(entry, semconv.STAGE_TEXT_NORMALIZATION, wrapped, args, kw)

    def _grouped(
        self, entry: Wrapped, wrapped: Callable[..., Any], args: Any, kwargs: Any,
        after: Callable[[Stage, Any, float], None] | None = None,
    ) -> Any:  # fmt: skip
        name = _CHILD_STAGES[entry.qualname]
        request = current()
        if request is None:  # no request to group in: a stage of its own
            with Stage(name) as stage:
                return wrapped(*args, **kwargs)
        state = self._states.of(request)
        stage = request.stage(name, parent=state.child_of(_GROUPS[entry.kind]))
        try:
            with stage:
                start = perf_counter()
                result = wrapped(*args, **kwargs)
                if after is not None:
                    after(stage, result, perf_counter() - start)
        except BaseException as error:
            state.group_ended_at = perf_counter()
            state.close_group(error)
            raise
        state.group_ended_at = perf_counter()
        return result

    def _speaker(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        return self._grouped(entry, wrapped, args, kw)

    def _llm(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        def count(stage: Stage, tokens: Any, seconds: float) -> None:
            generated = _length(tokens)
            request = current()
            if generated is None or request is None:
                return
            request.speech_tokens(generated)
            stage.set_attribute(semconv.ATTR_SPEECH_TOKENS, generated)
            if seconds > 0:
                stage.set_attribute(semconv.ATTR_TOKENS_PER_SECOND, generated / seconds)

        return self._grouped(entry, wrapped, args, kw, count)

    def _flow(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        return self._grouped(entry, wrapped, args, kw)

    def _vocoder(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        wav = self._plain_stage(entry, semconv.STAGE_VOCODER, wrapped, args, kw)
        request = current()
        samples = _length(wav)
        if request is None or samples is None:
            return wav
        state = self._states.of(request)
        if state.streaming:
            # Each streaming vocoder call renders the audio so far: the chunk is what is new.
            request.chunk(samples - state.emitted_samples, entry.sample_rate)
            state.emitted_samples = samples
        else:
            request.audio(samples=samples, sample_rate=entry.sample_rate)
        return wav

    def _stream(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is not None:
            return self._streaming(request, wrapped, args, kw)
        with synthesis(
            model=MODEL_NAME, model_version=self._model_version, kv_cache=self._kv_cache,
            sample_rate=getattr(instance, "sample_rate", None), streaming=True,
        ) as request:  # fmt: skip
            return self._streaming(request, wrapped, args, kw)

    def _streaming(self, request: Synthesis, wrapped: Any, args: Any, kwargs: Any) -> Any:
        state = self._states.of(request)
        state.streaming, state.emitted_samples = True, 0
        try:
            return wrapped(*args, **kwargs)
        finally:
            state.streaming = False
            state.close_group()

    def _request(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is not None:
            return self._segments(request, wrapped, args, kw)
        text_info = argument(entry, "text_info", args, kw)
        cache = argument(entry, "cache", args, kw)
        prompts = cache.get("cache_text") if isinstance(cache, Mapping) else None
        token2wav = argument(entry, "flow", args, kw)
        with synthesis(
            model=MODEL_NAME, model_version=self._model_version, kv_cache=self._kv_cache,
            sample_rate=getattr(token2wav, "sample_rate", None),
            text=text_info[1] if isinstance(text_info, list | tuple) else None,
            prompt_text=prompts[0] if prompts else None,
        ) as request:  # fmt: skip
            return self._segments(request, wrapped, args, kw)

    def _segments(self, request: Synthesis, wrapped: Any, args: Any, kwargs: Any) -> Any:
        state = self._states.of(request)
        state.segment = -1
        try:
            return wrapped(*args, **kwargs)
        finally:
            state.close_group()
            state.segment = None
            request.begin_segment(None)
