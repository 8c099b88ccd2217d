"""GLM-TTS instrumentor: spans and metrics for GLM-TTS's own classes, without touching its code.

    from tts_otel.integrations.glmtts import GLMTTSInstrumentor

    tts_otel.configure(exporters="otlp")
    GLMTTSInstrumentor().instrument(model_version="1.0")

Or with no code change: ``opentelemetry-instrument python glmtts_inference.py``
(the ``opentelemetry_instrumentor`` entry point finds it; tts-otel's
``opentelemetry_configurator`` sets up the SDK from ``OTEL_*`` and
``TTS_OTEL_*`` variables).

One user request is one ``tts.synthesize`` trace: ``generate_long`` (or
``Token2Wav.token2wav_stream`` for streaming) is where the instrumentor
learns of it, and the work its callers did just before in the same context
(prompt normalisation, speaker embedding, for streaming the LLM) is
adopted into it, with the request's span starting at that work (see
``_prologue``). Each text segment gets its own ``text_normalization``,
``acoustic`` (``acoustic.llm``, ``acoustic.flow``) and ``vocoder`` spans.
Audio is counted from what the call returns, when it returns: that is when
the caller can play it, streaming or not.

Modules are wrapped when they are imported (post-import hooks), so the
import order does not matter; ``glmtts_inference.py`` run as a script is
wrapped in ``__main__``, where its ``jsonl_generate`` looks ``generate_long`` up.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from time import perf_counter
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from tts_otel import semconv
from tts_otel.config import _flag as parse_flag
from tts_otel.errors import ConfigurationError
from tts_otel.integrations import _prologue
from tts_otel.request import Synthesis, current, synthesis
from tts_otel.stages import Stage

_log = logging.getLogger(__name__)

MODEL_NAME = "glm-tts"
ATTR_CODE_FUNCTION = "code.function.name"
ENV_MODEL_VERSION = "TTS_OTEL_MODEL_VERSION"
ENV_KV_CACHE = "TTS_OTEL_KV_CACHE"
SCRIPT = "glmtts_inference"


@dataclass(frozen=True)
class Wrapped:
    """One wrapped GLM-TTS callable, the parameters (after ``self``) its handler
    relies on, and the handler (a method name of the instrumentor)."""

    module: str
    qualname: str
    parameters: tuple[str, ...]
    handler: str
    sample_rate: int | None = None  # vocoders: the rate their output is at


# The contract with GLM-TTS: what is wrapped, by import path, and which
# parameter names and positions the handlers read. tests/test_glmtts.py
# fails when the stand-ins (kept to GLM-TTS's signatures) drift from it.
CONTRACT: tuple[Wrapped, ...] = (
    Wrapped("cosyvoice.cli.frontend", "TextFrontEnd.text_normalize", ("text",), "_normalize"),
    Wrapped("cosyvoice.cli.frontend", "TextFrontEnd.split_by_len",
            ("text", "min_text_len", "max_text_len"), "_text"),
    Wrapped("cosyvoice.cli.frontend", "TextFrontEnd.g2p_infer", ("text",), "_text"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_text_token", ("text",), "_tokenize"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_spk_embedding", ("speech",),
            "_grouped"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_speech_token",
            ("path_or_tuple",), "_grouped"),
    Wrapped("cosyvoice.cli.frontend", "TTSFrontEnd._extract_speech_feat",
            ("speech", "sample_rate"), "_grouped"),
    Wrapped("llm.glmtts", "GLMTTS.inference",
            ("text", "text_len", "prompt_text", "prompt_text_len", "prompt_speech_token",
             "prompt_speech_token_len"), "_grouped"),
    Wrapped("flow.flow", "Flow.inference_with_cache",
            ("token", "prompt_token", "prompt_feat", "embedding", "n_timesteps"), "_grouped"),
    Wrapped("utils.hift_util", "HiFTInference.__call__", ("mel",), "_vocoder", 24_000),
    Wrapped("utils.vocos_util", "Vocos2DInference.__call__", ("xs_mel_tr",), "_vocoder", 32_000),
    Wrapped("utils.tts_model_util", "Token2Wav.token2wav_stream",
            ("syn_token", "block_sizes", "look_future_sizes", "fade_sec", "embedding"), "_stream"),
    Wrapped(SCRIPT, "generate_long",
            ("frontend", "text_frontend", "llm", "flow", "text_info", "cache", "device",
             "embedding"), "_request"),
)  # fmt: skip

_GROUPED = {  # child stage, the stage it is grouped under
    "TTSFrontEnd._extract_spk_embedding": ("speaker_embedding.spk_embedding",
                                           semconv.STAGE_SPEAKER_EMBEDDING),
    "TTSFrontEnd._extract_speech_token": ("speaker_embedding.speech_token",
                                          semconv.STAGE_SPEAKER_EMBEDDING),
    "TTSFrontEnd._extract_speech_feat": ("speaker_embedding.speech_feat",
                                         semconv.STAGE_SPEAKER_EMBEDDING),
    "GLMTTS.inference": (semconv.STAGE_ACOUSTIC_LLM, semconv.STAGE_ACOUSTIC),
    "Flow.inference_with_cache": (semconv.STAGE_ACOUSTIC_FLOW, semconv.STAGE_ACOUSTIC),
}  # fmt: skip


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
    """What the handlers of one request share: the open group stage, segment, stream block."""

    def __init__(self, request: Synthesis) -> None:
        self.request = request
        self.group: Stage | None = None
        self.group_ended_at = 0.0
        self.segment: int | None = None
        self.block: int | None = None  # streaming: index of the block being rendered
        self.first_block_ready: float | None = None
        request.add_finalizer(self.close_group)

    def close_group(self, error: BaseException | None = None) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.end(error, at=self.group_ended_at)

    def child_of(self, group_name: str, at: float | None = None) -> Stage:
        if self.group is None or self.group.name != group_name:
            self.close_group()
            self.group = self.request.stage(group_name).start(current=False, at=at)
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


def _findable(module: str) -> bool:
    """Whether ``module``'s top-level package can be imported, without importing it.

    Under ``opentelemetry-instrument`` this runs before the script's folder is on
    ``sys.path``, so that folder is searched too.
    """
    top = module.split(".")[0]
    try:
        if importlib.util.find_spec(top) is not None:
            return True
    except (ImportError, ValueError):
        return False
    script = sys.argv[0] if sys.argv else ""
    if not os.path.isfile(script):
        return False
    folder = os.path.dirname(os.path.abspath(script))
    return importlib.machinery.PathFinder.find_spec(top, [folder]) is not None


def _is_glmtts_script(module: ModuleType) -> bool | None:
    """Whether ``__main__`` is glmtts_inference.py; ``None`` while it cannot tell yet."""
    spec: importlib.machinery.ModuleSpec | None = getattr(module, "__spec__", None)
    if spec is not None and spec.name == SCRIPT:
        return True
    path: str | None = getattr(module, "__file__", None)
    if path is None:
        return None
    return os.path.splitext(os.path.basename(path))[0] == SCRIPT


class GLMTTSInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps the callables in :data:`CONTRACT`; ``uninstrument()`` restores them exactly.

    ``instrument(model_version=..., kv_cache=...)`` sets attributes GLM-TTS
    does not expose; without them, ``TTS_OTEL_MODEL_VERSION`` and
    ``TTS_OTEL_KV_CACHE`` (GLM-TTS's LLM always decodes with a KV cache, so
    ``kv_cache`` defaults to ``True``).
    """

    # BaseInstrumentor is a singleton whose __init__ runs on every
    # GLMTTSInstrumentor() call: state is set in _instrument, not there.
    _wrapped: list[tuple[ModuleType, Wrapped]]
    _states: _States
    _model_version: str | None
    _kv_cache: bool | None
    _expected: tuple[Wrapped, ...] = ()
    _is_instrumented_by_opentelemetry: bool
    _generation = 0
    _watch_main = False
    _lock = threading.Lock()

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # GLM-TTS is not a pip package: nothing to check

    def instrument(self, **kwargs: Any) -> Any:
        result = super().instrument(**kwargs)
        if self._is_instrumented_by_opentelemetry and not self._expected:
            self._is_instrumented_by_opentelemetry = False  # nothing was found to wrap
        return result

    def _instrument(self, **kwargs: Any) -> None:
        version = kwargs.get("model_version", os.environ.get(ENV_MODEL_VERSION))
        self._model_version = version if isinstance(version, str) and version else None
        kv_cache = kwargs.get("kv_cache")
        raw = os.environ.get(ENV_KV_CACHE)
        if kv_cache is None and raw is not None:
            try:
                kv_cache = parse_flag(ENV_KV_CACHE, raw)
            except ConfigurationError as error:
                _log.warning("tts-otel: %s; GLM-TTS requests say kv_cache=true", error)
        self._kv_cache = True if kv_cache is None else bool(kv_cache)
        self._states = _States()
        self._wrapped = []
        self._generation += 1
        modules = sorted({entry.module for entry in CONTRACT})
        missing = [name for name in modules if not _findable(name)]
        self._expected = tuple(entry for entry in CONTRACT if entry.module not in missing)
        self._warn_missing(missing)
        self._watch_main = any(entry.module == SCRIPT for entry in self._expected)
        for name in sorted({entry.module for entry in self._expected}):
            wrapt.register_post_import_hook(self._on_import(self._generation), name)

    def _warn_missing(self, missing: list[str]) -> None:
        if not missing:
            return
        _log.warning(
            "tts-otel: GLM-TTS modules not found: %s; %s. Run from GLM-TTS's folder "
            "(the working directory of `python glmtts_inference.py`) or add that folder "
            "to PYTHONPATH",
            ", ".join(missing),
            "nothing is instrumented" if len(missing) == len({e.module for e in CONTRACT})
            else "the rest is instrumented",
        )  # fmt: skip

    def _on_import(self, generation: int) -> Callable[[ModuleType], None]:
        def wrap(module: ModuleType) -> None:
            # A hook registered by an earlier instrument() must not wrap again.
            if generation != self._generation:
                return
            for entry in self._expected:
                if entry.module == module.__name__:
                    self._wrap(module, entry)

        return wrap

    def _wrap(self, module: ModuleType, entry: Wrapped) -> None:
        try:
            wrapt.wrap_function_wrapper(module, entry.qualname, self._wrapper(entry))
        except AttributeError:
            _log.warning("tts-otel: GLM-TTS has no %s.%s; not instrumented",
                         module.__name__, entry.qualname)  # fmt: skip
            return
        self._wrapped.append((module, entry))

    def _wrap_main(self) -> None:
        """``python glmtts_inference.py`` runs that file as ``__main__``: wrap it there,
        once its functions exist (the first wrapped call happens after they do)."""
        with self._lock:
            main = sys.modules.get("__main__")
            is_script = None if main is None else _is_glmtts_script(main)
            if main is None or is_script is None:
                return
            self._watch_main = False
            function = getattr(main, "generate_long", None)
            if is_script and callable(function) and not hasattr(function, "__wrapped__"):
                entry = next(e for e in CONTRACT if e.module == SCRIPT)
                self._wrap(main, entry)

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, entry in self._wrapped:
            owner: Any = module
            *path, attribute = entry.qualname.split(".")
            for name in path:
                owner = getattr(owner, name)
            unwrap(owner, attribute)
        self._wrapped.clear()
        self._watch_main = False
        self._generation += 1  # hooks still waiting for an import now do nothing

    # --- handlers -----------------------------------------------------------
    def _wrapper(self, entry: Wrapped) -> Callable[..., Any]:
        handler: Callable[..., Any] = getattr(self, entry.handler)

        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            if not is_instrumentation_enabled():
                return wrapped(*args, **kwargs)
            if self._watch_main:
                self._wrap_main()
            return handler(entry, wrapped, instance, args, kwargs)

        return wrapper

    def _outside(
        self, entry: Wrapped, stage: str, group: str | None, wrapped: Callable[..., Any],
        args: Any, kwargs: Any,
    ) -> Any:  # fmt: skip
        """No request yet: run, and remember the timing for the request that may follow."""
        start = perf_counter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            _prologue.add(_prologue.Record(stage, group, entry.qualname, start, perf_counter(),
                                           error))  # fmt: skip
            raise
        tokens = _length(result) if entry.qualname == "GLMTTS.inference" else None
        _prologue.add(_prologue.Record(stage, group, entry.qualname, start, perf_counter(),
                                       speech_tokens=tokens))  # fmt: skip
        return result

    def _plain_stage(self, entry: Wrapped, name: str, wrapped: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is None:
            return self._outside(entry, name, None, wrapped, args, kw)
        self._states.of(request).close_group()
        with Stage(name) as stage:
            stage.set_attribute(ATTR_CODE_FUNCTION, entry.qualname)
            return wrapped(*args, **kw)

    def _normalize(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is not None:
            state = self._states.of(request)
            if state.segment is not None:
                # Inside generate_long each normalisation starts the next segment.
                state.segment += 1
                request.begin_segment(state.segment)
        result = self._plain_stage(entry, semconv.STAGE_TEXT_NORMALIZATION, wrapped, args, kw)
        raw = argument(entry, "text", args, kw)
        if request is None and isinstance(raw, str) and isinstance(result, str):
            _prologue.normalized(raw, result, perf_counter())
        return result

    def _text(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Splitting and g2p: text normalisation work outside the per-segment count."""
        return self._plain_stage(entry, semconv.STAGE_TEXT_NORMALIZATION, wrapped, args, kw)

    def _tokenize(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """No span: it tells which normalised text a streaming request's LLM was given."""
        result = wrapped(*args, **kw)
        text = argument(entry, "text", args, kw)
        if current() is None and isinstance(text, str):
            _prologue.tokenized(result, text, perf_counter())
        return result

    def _grouped(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        name, group = _GROUPED[entry.qualname]
        request = current()
        if request is None:
            if entry.qualname == "GLMTTS.inference":
                text = argument(entry, "text", args, kw)
                _prologue.llm_inputs(text, argument(entry, "prompt_text", args, kw))
            return self._outside(entry, name, group, wrapped, args, kw)
        state = self._states.of(request)
        stage = request.stage(name, parent=state.child_of(group))
        try:
            with stage:
                start = perf_counter()
                result = wrapped(*args, **kw)
                if entry.qualname == "GLMTTS.inference":
                    _count_tokens(request, stage, _length(result), perf_counter() - start)
        except BaseException as error:
            state.group_ended_at = perf_counter()
            state.close_group(error)
            raise
        state.group_ended_at = perf_counter()
        return result

    def _vocoder(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        state = None if request is None else self._states.of(request)
        if state is None or state.block is None:
            return self._plain_stage(entry, semconv.STAGE_VOCODER, wrapped, args, kw)
        state.close_group()
        with Stage(semconv.STAGE_VOCODER) as stage:
            # Streaming renders block by block inside one call: internal timings,
            # named as such; the audio the caller gets is counted on return.
            stage.set_attribute(ATTR_CODE_FUNCTION, entry.qualname)
            stage.set_attribute(semconv.ATTR_STREAM_BLOCK_INDEX, state.block)
            result = wrapped(*args, **kw)
        if state.first_block_ready is None:
            state.first_block_ready = perf_counter()
        state.block += 1
        return result

    def _stream(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is not None:
            return self._streaming(request, instance, wrapped, args, kw)
        prologue = _prologue.take()
        text = prologue.source_text(prologue.llm_text) if prologue else None
        with synthesis(
            model=MODEL_NAME, model_version=self._model_version, kv_cache=self._kv_cache,
            sample_rate=getattr(instance, "sample_rate", None), streaming=True, text=text,
            prompt_text=prologue.llm_prompt if prologue else None,
            start=prologue.start if prologue else None,
        ) as request:  # fmt: skip
            _replay(request, prologue)
            return self._streaming(request, instance, wrapped, args, kw)

    def _streaming(
        self, request: Synthesis, instance: Any, wrapped: Any, args: Any, kwargs: Any
    ) -> Any:
        state = self._states.of(request)
        state.block, state.first_block_ready = 0, None
        started = perf_counter()
        try:
            result = wrapped(*args, **kwargs)
        finally:
            state.close_group()
            state.block = None
        if state.first_block_ready is not None:
            request.set_attribute(
                semconv.ATTR_STREAM_FIRST_BLOCK_READY, state.first_block_ready - started
            )
        chunks = result[3] if isinstance(result, tuple) and len(result) > 3 else ()
        rate = getattr(instance, "sample_rate", None)
        for chunk in chunks:  # handed to the caller now, all at once
            request.chunk(len(chunk), rate)
        return result

    def _request(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        token2wav = argument(entry, "flow", args, kw)
        request = current()
        if request is not None:
            return self._segments(request, token2wav, wrapped, args, kw)
        prologue = _prologue.take()
        text_info = argument(entry, "text_info", args, kw)
        text = text_info[1] if isinstance(text_info, list | tuple) and len(text_info) > 1 else None
        cache = argument(entry, "cache", args, kw)
        prompts = cache.get("cache_text") if isinstance(cache, Mapping) else None
        prompt = prompts[0] if isinstance(prompts, list) and prompts else None
        if prologue is not None and isinstance(text, str):
            text = prologue.source_text(text) or text  # the input, not its normalised form
        with synthesis(
            model=MODEL_NAME, model_version=self._model_version, kv_cache=self._kv_cache,
            sample_rate=getattr(token2wav, "sample_rate", None), text=text, prompt_text=prompt,
            start=prologue.start if prologue else None,
        ) as request:  # fmt: skip
            _replay(request, prologue)
            return self._segments(request, token2wav, wrapped, args, kw)

    def _segments(
        self, request: Synthesis, token2wav: Any, wrapped: Any, args: Any, kwargs: Any
    ) -> Any:
        state = self._states.of(request)
        state.segment = -1
        try:
            result = wrapped(*args, **kwargs)
        finally:
            state.close_group()
            state.segment = None
            request.begin_segment(None)
        wav = result[0] if isinstance(result, tuple) and result else None
        samples = _length(wav)
        if samples is not None:  # the caller can play it from now on
            request.audio(samples=samples, sample_rate=getattr(token2wav, "sample_rate", None))
        return result


def _count_tokens(request: Synthesis, stage: Stage, generated: int | None, seconds: float) -> None:
    if generated is None:
        return
    request.speech_tokens(generated)
    stage.set_attribute(semconv.ATTR_SPEECH_TOKENS, generated)
    if seconds > 0:
        stage.set_attribute(semconv.ATTR_TOKENS_PER_SECOND, generated / seconds)


def _replay(request: Synthesis, prologue: _prologue.Prologue | None) -> None:
    """The adopted work as stages of ``request``, at the times it ran."""
    if prologue is None:
        return
    group: Stage | None = None
    ended = 0.0
    for record in prologue.records:
        if group is not None and group.name != record.group:
            group.end(at=ended)
            group = None
        if record.group is not None and group is None:
            group = request.stage(record.group).start(current=False, at=record.start)
        stage = request.stage(record.stage, parent=group).start(current=False, at=record.start)
        stage.set_attribute(ATTR_CODE_FUNCTION, record.function)
        _count_tokens(request, stage, record.speech_tokens, record.end - record.start)
        stage.end(record.error, at=record.end)
        ended = record.end
    if group is not None:
        group.end(at=ended)
