"""What each kind of wrapped GLM-TTS call records: one handler per :class:`Kind`.

A handler gets the contract entry and the call (wrapped function, instance, arguments)
and returns what the call returned; it never changes what GLM-TTS sees or raises.
Inside a request a call is a stage of it; outside one it is either where a request
starts (``generate_long``, ``token2wav_stream``, the web UI's handler, a resynthesis),
or work a request that may follow adopts (``prologue``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from time import perf_counter
from typing import Any

from tts_otel import semconv
from tts_otel.integrations.glmtts import prologue as _prologue
from tts_otel.integrations.glmtts import web_ui
from tts_otel.integrations.glmtts.contract import Kind, Wrapped, argument, length
from tts_otel.integrations.glmtts.request_state import (
    ATTR_CODE_FUNCTION,
    States,
    count_tokens,
    replay,
)
from tts_otel.request import Synthesis, current, synthesis
from tts_otel.stages import Stage
from tts_otel.telemetry import Telemetry

_log = logging.getLogger(__name__)

MODEL_NAME = "glm-tts"

# (entry, wrapped function, instance, positional arguments, keyword arguments) -> result
Handler = Callable[[Wrapped, Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class Handlers:
    """The handlers of one ``instrument()``: the request attributes GLM-TTS does not
    expose, the providers' handle, and the state the handlers of a request share."""

    def __init__(
        self, model_version: str | None, kv_cache: bool, telemetry: Telemetry | None
    ) -> None:
        self._model_version = model_version
        self._kv_cache = kv_cache
        self._telemetry = telemetry  # None: the active handle
        self._states = States()
        self._by_kind: dict[Kind, Handler] = {
            Kind.NORMALIZE: self._normalize,
            Kind.TEXT: self._text,
            Kind.TOKENIZE: self._tokenize,
            Kind.PART: self._part,
            Kind.VOCODER: self._vocoder,
            Kind.STREAM: self._stream,
            Kind.RESYNTHESIS: self._resynthesis,
            Kind.MODEL_LOAD: self._model_load,
            Kind.REQUEST: self._request,
            Kind.WEB_REQUEST: self._web_request,
        }

    def of(self, kind: Kind) -> Handler:
        return self._by_kind[kind]

    # --- work outside any request -------------------------------------------------
    def _outside(
        self, entry: Wrapped, stage: str, wrapped: Callable[..., Any], args: Any, kw: Any
    ) -> Any:
        """No request yet: run, and remember the timing for the request that may follow."""
        start = perf_counter()
        try:
            result = wrapped(*args, **kw)
        except BaseException as error:
            failed = _prologue.Record(
                stage, entry.group, entry.qualname, start, perf_counter(), error
            )
            # The work of a request failed before the call that would have started it
            # (jsonl_generate logs the item and goes on): it is a failed request.
            self._failed_request(_prologue.failed(failed), error)
            raise
        tokens = length(result) if entry.generates_speech_tokens else None
        record = _prologue.Record(
            stage, entry.group, entry.qualname, start, perf_counter(), speech_tokens=tokens
        )
        _prologue.add(record)
        return result

    def _failed_request(self, prologue: _prologue.Prologue, error: BaseException) -> None:
        try:
            with self._new_request(prologue):
                raise error
        except BaseException as raised:
            if raised is not error:
                _log.exception("tts-otel: could not record the failed GLM-TTS request")

    # --- stages ---------------------------------------------------------------------
    def _stage(
        self,
        entry: Wrapped,
        name: str,
        wrapped: Any,
        args: Any,
        kw: Any,
        attributes: Mapping[str, int] | None = None,
    ) -> Any:
        request = current()
        if request is None:
            return self._outside(entry, name, wrapped, args, kw)
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
        result = self._stage(entry, semconv.STAGE_TEXT_NORMALIZATION, wrapped, args, kw)
        raw = argument(entry, "text", args, kw)
        if request is None and isinstance(raw, str) and isinstance(result, str):
            _prologue.normalized(raw, result, perf_counter())
        return result

    def _text(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Splitting and g2p: text normalisation work outside the per-segment count."""
        return self._stage(entry, semconv.STAGE_TEXT_NORMALIZATION, wrapped, args, kw)

    def _tokenize(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """No span: it tells which normalised text a streaming request's LLM was given."""
        result = wrapped(*args, **kw)
        text = argument(entry, "text", args, kw)
        if current() is None and isinstance(text, str):
            _prologue.tokenized(result, text, perf_counter())
        return result

    def _part(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """A part of a group stage, which opens with its first part and ends with its last."""
        name, group = str(entry.stage), str(entry.group)
        request = current()
        if request is None:
            if entry.generates_speech_tokens:  # the LLM run before a streaming request
                text = argument(entry, "text", args, kw)
                _prologue.llm_inputs(text, argument(entry, "prompt_text", args, kw))
            return self._outside(entry, name, wrapped, args, kw)
        state = self._states.of(request)
        stage = request.stage(name, parent=state.child_of(group))
        try:
            with stage:
                start = perf_counter()
                result = wrapped(*args, **kw)
                if entry.generates_speech_tokens:
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
            return self._stage(entry, semconv.STAGE_VOCODER, wrapped, args, kw)
        # Streaming renders block by block inside one call: internal timings, named
        # as such; the audio the caller gets is counted on return.
        block = {semconv.ATTR_STREAM_BLOCK_INDEX: state.block}
        result = self._stage(entry, semconv.STAGE_VOCODER, wrapped, args, kw, block)
        if state.first_block_ready is None:
            state.first_block_ready = perf_counter()
        state.block += 1
        return result

    def _model_load(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Inside a request (the web UI's lazy model cache) a stage of it; at start-up,
        before any request, not a request's work."""
        if current() is None:
            return wrapped(*args, **kw)
        return self._stage(entry, semconv.STAGE_MODEL_LOAD, wrapped, args, kw)

    # --- where requests start -------------------------------------------------------
    @contextlib.contextmanager
    def _new_request(
        self, prologue: _prologue.Prologue | None, **described: Any
    ) -> Iterator[Synthesis]:
        """A request that starts with the work its caller did just before (``prologue``)."""
        described.setdefault("kv_cache", self._kv_cache)
        with synthesis(
            model=MODEL_NAME,
            model_version=self._model_version,
            telemetry=self._telemetry,
            start=prologue.start if prologue else None,
            **described,
        ) as request:
            if prologue is not None and prologue.reused:
                request.set_attribute(semconv.ATTR_PROMPT_REUSED, True)
            replay(self._states.of(request), prologue)
            yield request

    def _web_request(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """One click of the web UI: from its first line (model loading, prompt work) to the
        audio it returns, or the error the user sees."""
        if current() is not None:
            return wrapped(*args, **kw)
        cache = argument(entry, "use_cache", args, kw)
        with self._new_request(
            None,
            text=argument(entry, "input_text", args, kw),
            prompt_text=argument(entry, "prompt_text", args, kw),
            sample_rate=argument(entry, "sample_rate", args, kw),
            kv_cache=cache if isinstance(cache, bool) else self._kv_cache,
        ) as request:
            waited = web_ui.queue_wait.get()
            if waited is not None:
                request.queue_wait(waited)
            return wrapped(*args, **kw)

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
            prologue,
            sample_rate=getattr(token2wav, "sample_rate", None),
            text=text,
            prompt_text=prompt,
        ) as request:
            return self._segments(request, token2wav, wrapped, args, kw)

    def _segments(
        self, request: Synthesis, token2wav: Any, wrapped: Any, args: Any, kwargs: Any
    ) -> Any:
        """A call that returns ``(wav, ...)`` inside ``request``: each text normalisation
        in it starts a segment; the wav returned is audio the caller can play from now on."""
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

    def _stream(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        request = current()
        if request is not None:
            return self._streaming(request, instance, wrapped, args, kw)
        prologue = _prologue.take()
        text = prologue.source_text(prologue.llm_text) if prologue else None
        with self._new_request(
            prologue,
            sample_rate=getattr(instance, "sample_rate", None),
            streaming=True,
            text=text,
            prompt_text=prologue.llm_prompt if prologue else None,
        ) as request:
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

    def _resynthesis(self, entry: Wrapped, wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
        """Audio from speech tokens (tools/flow_reconstruct.py): flow and vocoder, no LLM.
        Inside generate_long it is that request's work."""
        if current() is not None:
            return wrapped(*args, **kw)
        rate = getattr(instance, "sample_rate", None)
        with self._new_request(
            _prologue.take(), sample_rate=rate, kind=semconv.REQUEST_KIND_RESYNTHESIS
        ) as request:
            return self._segments(request, instance, wrapped, args, kw)
