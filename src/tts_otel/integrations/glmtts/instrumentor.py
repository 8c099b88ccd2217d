"""The GLM-TTS instrumentor: its handlers, one per kind of wrapped call."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from time import perf_counter
from typing import Any

from tts_otel import semconv
from tts_otel.config import _flag as parse_flag
from tts_otel.errors import ConfigurationError
from tts_otel.integrations.glmtts import prologue as _prologue
from tts_otel.integrations.glmtts import web_ui
from tts_otel.integrations.glmtts.contract import (
    GROUPED,
    Wrapped,
    argument,
    length,
)
from tts_otel.integrations.glmtts.requests import (
    ATTR_CODE_FUNCTION,
    States,
    count_tokens,
    replay,
)
from tts_otel.integrations.glmtts.web_ui import GradioHooks
from tts_otel.integrations.glmtts.wrapping import ContractWrapping
from tts_otel.request import Synthesis, current, synthesis
from tts_otel.stages import Stage
from tts_otel.telemetry import Telemetry, get_telemetry

_log = logging.getLogger(__name__)

MODEL_NAME = "glm-tts"
ENV_MODEL_VERSION = "TTS_OTEL_MODEL_VERSION"
ENV_KV_CACHE = "TTS_OTEL_KV_CACHE"


class GLMTTSInstrumentor(ContractWrapping):
    """Wraps the callables in :data:`CONTRACT`; ``uninstrument()`` restores them exactly.

    ``instrument(model_version=..., kv_cache=...)`` sets attributes GLM-TTS
    does not expose; without them, ``TTS_OTEL_MODEL_VERSION`` and
    ``TTS_OTEL_KV_CACHE`` (GLM-TTS's LLM always decodes with a KV cache, so
    ``kv_cache`` defaults to ``True``). ``tracer_provider=`` and ``meter_provider=``,
    as every OpenTelemetry instrumentor takes them, send GLM-TTS's requests there
    instead of to the active handle's providers.
    """

    # BaseInstrumentor is a singleton whose __init__ runs on every
    # GLMTTSInstrumentor() call: state is set in _instrument, not there.
    _states: States
    _model_version: str | None
    _kv_cache: bool | None
    _telemetry: Telemetry | None
    _gradio: GradioHooks | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        # GLM-TTS is a folder, not a pip package: there is no distribution to check.
        # Where none of its modules can be found, instrument() says so at DEBUG only.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        version = kwargs.get("model_version", os.environ.get(ENV_MODEL_VERSION))
        self._model_version = version if isinstance(version, str) and version else None
        kv_cache = kwargs.get("kv_cache")
        raw = os.environ.get(ENV_KV_CACHE, "").strip()  # empty means unset, as everywhere
        if kv_cache is None and raw:
            try:
                kv_cache = parse_flag(ENV_KV_CACHE, raw)
            except ConfigurationError as error:
                _log.warning("tts-otel: %s; GLM-TTS requests say kv_cache=true", error)
        self._kv_cache = True if kv_cache is None else bool(kv_cache)
        self._telemetry = _telemetry_for(kwargs.get("tracer_provider"),
                                         kwargs.get("meter_provider"))  # fmt: skip
        self._states = States()
        self._wrap_contract()
        if self._expected:
            self._gradio = GradioHooks(self)

    def _uninstrument(self, **kwargs: Any) -> None:
        super()._uninstrument(**kwargs)
        if self._gradio is not None:
            self._gradio.remove()
            self._gradio = None

    # --- handlers -----------------------------------------------------------
    def _outside(
        self, entry: Wrapped, stage: str, group: str | None, wrapped: Callable[..., Any],
        args: Any, kwargs: Any,
    ) -> Any:  # fmt: skip
        """No request yet: run, and remember the timing for the request that may follow."""
        start = perf_counter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            record = _prologue.Record(stage, group, entry.qualname, start, perf_counter(), error)
            # The work of a request failed before the call that would have started it
            # (jsonl_generate logs the item and goes on): it is a failed request.
            self._failed_request(_prologue.failed(record), error)
            raise
        tokens = length(result) if entry.qualname == "GLMTTS.inference" else None
        _prologue.add(_prologue.Record(stage, group, entry.qualname, start, perf_counter(),
                                       speech_tokens=tokens))  # fmt: skip
        return result

    def _plain_stage(
        self, entry: Wrapped, name: str, wrapped: Any, args: Any, kw: Any,
        attributes: Mapping[str, int] | None = None,
    ) -> Any:  # fmt: skip
        request = current()
        if request is None:
            return self._outside(entry, name, None, wrapped, args, kw)
        self._states.of(request).close_group()
        with Stage(name) as stage:
            stage.set_attribute(ATTR_CODE_FUNCTION, entry.qualname)
            for key, value in (attributes or {}).items():
                stage.set_attribute(key, value)
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
        name, group = GROUPED[entry.qualname]
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
                    count_tokens(request, stage, length(result), perf_counter() - start)
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
        # Streaming renders block by block inside one call: internal timings, named
        # as such; the audio the caller gets is counted on return.
        block = {semconv.ATTR_STREAM_BLOCK_INDEX: state.block}
        result = self._plain_stage(entry, semconv.STAGE_VOCODER, wrapped, args, kw, block)
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
        with self._new_request(
            prologue, sample_rate=getattr(instance, "sample_rate", None), streaming=True,
            text=text, prompt_text=prologue.llm_prompt if prologue else None,
        ) as request:  # fmt: skip
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
        with self._new_request(
            prologue, sample_rate=getattr(token2wav, "sample_rate", None), text=text,
            prompt_text=prompt,
        ) as request:  # fmt: skip
            return self._segments(request, token2wav, wrapped, args, kw)

    @contextlib.contextmanager
    def _new_request(
        self, prologue: _prologue.Prologue | None, **described: Any
    ) -> Iterator[Synthesis]:
        """A request that starts with the work its caller did just before (``prologue``)."""
        described.setdefault("kv_cache", self._kv_cache)
        with synthesis(
            model=MODEL_NAME, model_version=self._model_version, telemetry=self._telemetry,
            start=prologue.start if prologue else None, **described,
        ) as request:  # fmt: skip
            if prologue is not None and prologue.reused:
                request.set_attribute(semconv.ATTR_PROMPT_REUSED, True)
            replay(self._states.of(request), prologue)
            yield request

    def _failed_request(self, prologue: _prologue.Prologue, error: BaseException) -> None:
        try:
            with self._new_request(prologue):
                raise error
        except BaseException as raised:
            if raised is not error:
                _log.exception("tts-otel: could not record the failed GLM-TTS request")

    def _model_load(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Inside a request (the web UI's lazy model cache) a stage of it; at start-up,
        before any request, not a request's work."""
        if current() is None:
            return wrapped(*args, **kw)
        return self._plain_stage(entry, semconv.STAGE_MODEL_LOAD, wrapped, args, kw)

    def _web_request(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """One click of the web UI: from its first line (model loading, prompt work) to the
        audio it returns, or the error the user sees."""
        if current() is not None:
            return wrapped(*args, **kw)
        text, prompt = (
            argument(entry, "input_text", args, kw),
            argument(entry, "prompt_text", args, kw),
        )
        rate, cache = (
            argument(entry, "sample_rate", args, kw),
            argument(entry, "use_cache", args, kw),
        )
        with self._new_request(
            None, text=text, prompt_text=prompt, sample_rate=rate,
            kv_cache=cache if isinstance(cache, bool) else self._kv_cache,
        ) as request:  # fmt: skip
            waited = web_ui.queue_wait.get()
            if waited is not None:
                request.queue_wait(waited)
            return wrapped(*args, **kw)

    def _resynthesis(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Audio from speech tokens (tools/flow_reconstruct.py): flow and vocoder, no LLM.
        Inside generate_long it is that request's work."""
        if current() is not None:
            return wrapped(*args, **kw)
        rate = getattr(instance, "sample_rate", None)
        with self._new_request(
            _prologue.take(), sample_rate=rate, kind=semconv.REQUEST_KIND_RESYNTHESIS
        ) as request:
            state = self._states.of(request)
            try:
                result = wrapped(*args, **kw)
            finally:
                state.close_group()
            samples = length(result[0] if isinstance(result, tuple) and result else None)
            if samples is not None:
                request.audio(samples=samples, sample_rate=rate)
            return result

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
        samples = length(wav)
        if samples is not None:  # the caller can play it from now on
            request.audio(samples=samples, sample_rate=getattr(token2wav, "sample_rate", None))
        return result


def _telemetry_for(tracer_provider: object, meter_provider: object) -> Telemetry | None:
    """A handle on the providers given to ``instrument()``, with the active settings;
    ``None`` (the active handle) when neither was given."""
    if tracer_provider is None and meter_provider is None:
        return None
    from opentelemetry import metrics, trace

    active = get_telemetry()
    return Telemetry(
        active.settings,
        tracer_provider or trace.get_tracer_provider(),  # type: ignore[arg-type]
        meter_provider or metrics.get_meter_provider(),  # type: ignore[arg-type]
        owns_providers=False,
    )
