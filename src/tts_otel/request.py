"""One synthesis request: the ``tts.synthesize`` span and the request-level metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from time import perf_counter, time_ns
from types import TracebackType

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._context import current_owner, current_segment
from tts_otel._describe import Description, describe
from tts_otel._playback import Audio, Playback, checked_audio
from tts_otel._request_stages import RequestStages
from tts_otel._spans import (
    instrumentation_suppressed,
    live_parent,
    mark_error,
    restore_context,
    set_span_attribute,
)
from tts_otel._validation import MAX_COUNT
from tts_otel.gpu.cuda import RequestGpu
from tts_otel.stages import Stage
from tts_otel.telemetry import Telemetry, get_telemetry

_log = logging.getLogger(__name__)

current_request: ContextVar[Synthesis | None] = ContextVar("tts_otel_request", default=None)


class Synthesis:
    """One request: enter it with ``with``; stages, audio and tokens are recorded on it.

    The input text is measured (characters, length bin) but not exported
    unless ``record_text`` asks for it (``True`` or ``"hash"``). ``start``, a
    ``time.perf_counter()`` reading, backdates the request to when its work
    really began (an integration that learns of a request after its first
    stages ran). Nothing here raises into the service: a value of the wrong
    type is dropped, counted and warned about once.
    """

    def __init__(
        self,
        *,
        model: str,
        model_version: str | None = None,
        sample_rate: int | None = None,
        kv_cache: bool | None = None,
        streaming: bool = False,
        text: str | None = None,
        characters: int | None = None,
        language: str | None = None,
        prompt_text: str | None = None,
        record_text: bool | str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        telemetry: Telemetry | None = None,
        start: float | None = None,
        kind: str = semconv.REQUEST_KIND_SYNTHESIS,
    ) -> None:
        # Not ``telemetry or get_telemetry()``: a hostile object's __bool__ may
        # raise, and anything but a Telemetry fails on every later call.
        self.telemetry = telemetry if isinstance(telemetry, Telemetry) else get_telemetry()
        if telemetry is not None and telemetry is not self.telemetry:
            self.telemetry.values.reject("telemetry", telemetry, "not a Telemetry")
        self._span: Span | None = None
        self._description = Description()
        self._stages = RequestStages(self.telemetry, self._description)
        self._playback = Playback()
        self._speech_tokens = 0
        self._backdate: float | None = None
        self._start = 0.0
        self._exited = False
        # What was current where the request started: context, request, segment.
        self._caller: tuple[Context, Synthesis | None, int | None] = (
            self._stages.context,
            None,
            None,
        )
        self._finalizers: list[Callable[[BaseException | None], None]] = []
        try:
            if start is not None:
                # Compared with perf_counter() on entry: a non-number would raise there.
                self._backdate = self.telemetry.values.number("start", start)
            describe(
                self._description,
                self.telemetry,
                model=model,
                model_version=model_version,
                sample_rate=sample_rate,
                kv_cache=kv_cache,
                streaming=streaming,
                text=text,
                characters=characters,
                language=language,
                prompt_text=prompt_text,
                record_text=record_text,
                attributes=attributes,
                kind=kind,
            )
        except Exception:
            # Still measured, with the attributes described so far: an unmeasured
            # request would not be current, so a stage left open in it could not
            # be taken off the caller's context when the request ends.
            _log.exception("tts-otel: could not describe the request; it has fewer attributes")

    @property
    def context(self) -> Context:
        """The context holding this request's span, for work started elsewhere."""
        return self._stages.context

    @property
    def gpu(self) -> RequestGpu | None:  # per-request peak memory and CUDA events, if on
        return self._stages.gpu

    @property
    def sample_rate(self) -> int | None:
        return self._description.sample_rate

    @property
    def characters(self) -> int | None:
        """The input text's length, counted before any normalisation."""
        return self._description.characters

    # --- lifecycle ----------------------------------------------------------
    def __enter__(self) -> Synthesis:
        now = perf_counter()
        self._start = now if self._backdate is None else min(self._backdate, now)
        self._playback.start = self._start
        self._stages.anchor = (time_ns(), now)
        try:
            if instrumentation_suppressed():  # suppress_instrumentation(): unmeasured
                return self
            telemetry = self.telemetry
            caller = context.get_current()
            parent, links = live_parent(caller)
            span = telemetry.tracer.start_span(
                semconv.SPAN_SYNTHESIZE,
                context=parent,
                attributes=self._description.attributes,
                links=links,
                start_time=self._stages.wall_ns(self._start),
            )
            self._caller = (caller, current_request.get(), current_segment.get())
            self._stages.context = trace.set_span_in_context(span, parent)
            self._span = span
            context.attach(self.context)
            current_request.set(self)
            current_owner.set(self._stages)
            current_segment.set(None)
            if telemetry.cuda is not None:
                self._stages.gpu = RequestGpu(telemetry.cuda, events=telemetry.cuda_events)
        except Exception:
            _log.exception("tts-otel: could not start the request span; it runs unmeasured")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = perf_counter() - self._start
        self._exited = True
        span = self._span
        if span is None:
            return
        try:
            self._finish(span, duration, exc)
        except Exception:
            _log.exception("tts-otel: could not record the request")
        finally:
            self._leave()

    def _leave(self) -> None:
        """Whatever failed, the caller's context must not keep this request.

        Values are set back, not reset with tokens: a token works only in the
        Context that made it, and a request may end in another one (a copied
        context, ``asyncio.to_thread``, a streaming generator resumed in a
        thread pool). Where this request is not current, there is nothing to undo.

        Where it is current, the caller's context is put back whatever is attached
        on top of it: a stage started and never ended (or ended in another
        context) would otherwise stay current after the request, and the next
        request would become its child. A request that enclosed this one but
        ended first (interleaved, not nested) is skipped for the same reason.
        """
        try:
            if current_request.get() is self:
                outer, previous, segment = self._caller
                while previous is not None and previous._exited:
                    outer, previous, segment = previous._caller
                current_request.set(previous)
                current_owner.set(None if previous is None else previous._stages)
                current_segment.set(segment)
                context.attach(outer)
            else:
                restore_context(self.context, self._caller[0])
        except Exception:
            _log.exception("tts-otel: could not restore the caller's context")

    def _finish(self, span: Span, duration: float, exc: BaseException | None) -> None:
        for finalizer in self._finalizers:
            try:
                finalizer(exc)
            except Exception:
                _log.exception(
                    "tts-otel: a request finalizer failed; the request is still recorded"
                )
        self._stages.closed = True
        instruments = self.telemetry.instruments
        measurements = self._stages.measurements
        failure = (
            mark_error(span, exc, details=self._stages.error_details) if exc is not None else None
        )
        self._stages.resolve_gpu(span)

        outcome = {
            semconv.ATTR_OUTCOME: semconv.OUTCOME_ERROR if failure else semconv.OUTCOME_OK,
            semconv.ATTR_ERROR_TYPE: failure,
        }
        config, ctx = self._description.metric_config, self.context
        request_attributes = self.telemetry.guard.bound({**config, **outcome})
        measurements += [
            (instruments.request_duration.record, duration, request_attributes, ctx),
            (instruments.requests.add, 1, request_attributes, ctx),
        ]
        characters, tokens = self._description.characters, self._speech_tokens
        if characters is not None:
            measurements.append((instruments.text_characters.record, characters, config, ctx))
        if tokens:
            span.set_attribute(semconv.ATTR_SPEECH_TOKENS, tokens)
            span.set_attribute(semconv.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS, tokens)
            measurements.append((instruments.speech_tokens.record, tokens, config, ctx))
        self._playback.record(span, duration, instruments, config, ctx, measurements)
        self.telemetry.buffer.push(measurements)
        # The span ends when the duration was taken, not after this bookkeeping:
        # its length and the recorded duration are one number.
        span.end(self._stages.wall_ns(self._start + duration))

    def stage(self, name: str, parent: Stage | None = None) -> Stage:
        """A stage of this request: ``with req.stage("acoustic"): ...``."""
        return Stage(name, self._stages, parent)

    @contextlib.contextmanager
    def segment(self, index: int) -> Iterator[None]:
        """Stages inside carry ``tts.segment.index``: one set of stage spans per text segment."""
        previous = current_segment.get()
        current_segment.set(index)
        try:
            yield
        finally:
            current_segment.set(previous)

    def begin_segment(self, index: int | None) -> None:
        """Stages from now on carry ``tts.segment.index`` (none after ``None``), until the next
        call or the request end. For integrations that cannot wrap a library's segment loop
        in ``segment()``."""
        current_segment.set(index)

    def add_finalizer(self, finalizer: Callable[[BaseException | None], None]) -> None:
        """Call ``finalizer(error)`` when the request ends, before it is recorded."""
        self._finalizers.append(finalizer)

    # --- what the service reports -------------------------------------------
    def audio(
        self,
        *,
        samples: int | None = None,
        sample_rate: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Add produced audio (samples at a rate, or seconds); sets the time to first audio."""
        added = self._audio(samples, sample_rate, seconds)
        if added is not None:
            self._playback.audio(added, perf_counter())

    def chunk(self, samples: int, sample_rate: int | None = None) -> None:
        """A streamed chunk handed to the client: time to first audio, chunk gaps, and
        underrun (see ``_playback``)."""
        added = self._audio(samples, sample_rate, None)
        if added is None:
            return
        gap = self._playback.chunk(added, perf_counter())
        if gap is not None:
            record = self.telemetry.instruments.chunk_interval.record
            self._stages.measurements.append((record, gap, self._description.metric_config, None))

    def queue_wait(self, seconds: float) -> None:
        """Seconds the request waited in the server's queue before its handler ran: its own
        figure (``tts.queue.wait``, ``tts.request.queue_wait``), outside the request's duration,
        so that slow because queued is told from slow because synthesis was slow."""
        checked = self.telemetry.values.number(semconv.ATTR_QUEUE_WAIT, seconds)
        if checked is None:
            return
        self.set_attribute(semconv.ATTR_QUEUE_WAIT, checked)
        record = self.telemetry.instruments.queue_wait.record
        self._stages.measurements.append(
            (record, checked, self._description.metric_config, self.context)
        )

    def speech_tokens(self, count: int) -> None:
        """Add speech tokens generated by the acoustic model."""
        checked = self.telemetry.values.count(semconv.ATTR_SPEECH_TOKENS, count)
        if checked is not None and self._speech_tokens + checked > MAX_COUNT:
            # Each count fits int64, their sum need not (see MAX_COUNT).
            self.telemetry.values.reject(semconv.ATTR_SPEECH_TOKENS, count, "total over int64")
        elif checked is not None:
            self._speech_tokens += checked

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """An extra attribute on the request span only (never a metric label)."""
        if self._span is not None:
            set_span_attribute(self._span, key, value)

    @property
    def span(self) -> Span:
        return self._span if self._span is not None else trace.INVALID_SPAN

    def _audio(self, samples: object, rate: object, seconds: object) -> Audio | None:
        rate = self._description.sample_rate if rate is None else rate
        return checked_audio(self.telemetry.values, samples, rate, seconds)


# `with tts_otel.synthesis(model=..., text=...) as req:` reads as an action;
# it is the class itself, so there is one signature to keep.
synthesis = Synthesis


def current() -> Synthesis | None:
    """The request active in this context, if any (for integrations)."""
    return current_request.get()
