"""One synthesis request: the ``tts.synthesize`` span and the request-level metrics."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from time import perf_counter, time_ns
from types import TracebackType
from typing import TypeVar, cast

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._context import current_owner, current_segment
from tts_otel._spans import mark_error, restore_context, set_span_attribute
from tts_otel._validation import MAX_COUNT, ValueChecker, plain
from tts_otel.config import TextRecording
from tts_otel.gpu import GpuInterval, RequestGpu
from tts_otel.metric_buffer import Measurement
from tts_otel.stages import Stage
from tts_otel.telemetry import Telemetry, get_telemetry

_log = logging.getLogger(__name__)

T = TypeVar("T")

current_request: ContextVar[Synthesis | None] = ContextVar("tts_otel_request", default=None)

_TEXT_MODES: dict[object, TextRecording] = {
    True: "plain",
    False: "off",
    "plain": "plain",
    "off": "off",
    "hash": "sha256",
    "sha256": "sha256",
}


class _Checked:
    """Request settings of the wrong type are dropped and counted, never raised on."""

    def __init__(self, checker: ValueChecker) -> None:
        self._checker = checker

    def of(self, name: str, value: object, kind: type[T]) -> T | None:
        if value is None:
            return None
        wrong_bool = kind is int and isinstance(value, bool)
        if isinstance(value, kind) and not wrong_bool:
            return cast(T, plain(value))
        self._checker.reject(name, value, f"not a {kind.__name__}")
        return None


class _Stages:
    """The request as its stages see it (``_context.StageOwner``), kept off the
    public surface of :class:`Synthesis`."""

    def __init__(self, request: Synthesis) -> None:
        self._request = request
        self._span_attributes: dict[str, Mapping[str, AttributeValue]] = {}
        self._metric_attributes: dict[str, Mapping[str, AttributeValue]] = {}
        # Stage spans waiting for the request to resolve their CUDA events.
        self.deferred: list[tuple[Span, int, GpuInterval, Mapping[str, AttributeValue]]] = []

    @property
    def telemetry(self) -> Telemetry:
        return self._request.telemetry

    @property
    def context(self) -> Context:
        return self._request.context

    @property
    def gpu(self) -> RequestGpu | None:
        return self._request.gpu

    def wall_ns(self, at: float) -> int:
        return self._request._wall_ns(at)

    def span_attributes(self, stage: str) -> Mapping[str, AttributeValue]:
        attributes = self._span_attributes.get(stage)
        if attributes is None:
            attributes = {**self._request._span_config, semconv.ATTR_STAGE: stage}
            self._span_attributes[stage] = attributes
        return attributes

    def metric_attributes(self, stage: str, failure: str | None) -> Mapping[str, AttributeValue]:
        # Segments repeat stages: successful runs reuse one guarded mapping.
        cached = self._metric_attributes.get(stage) if failure is None else None
        if cached is not None:
            return cached
        attributes = self.telemetry.guard.bound(
            {**self._request._metric_config, semconv.ATTR_STAGE: stage,
             semconv.ATTR_ERROR_TYPE: failure}
        )  # fmt: skip
        if failure is None:
            self._metric_attributes[stage] = attributes
        return attributes

    def finished(
        self, span: Span, context: Context, end_ns: int, duration: float,
        attributes: Mapping[str, AttributeValue], gpu: GpuInterval | None,
    ) -> None:  # fmt: skip
        request = self._request
        measurement = (self.telemetry.instruments.stage_duration.record, duration, attributes,
                       context)  # fmt: skip
        if request._finished:
            span.end(end_ns)
            self.telemetry.buffer.push([measurement])
            return
        request._measurements.append(measurement)
        if gpu is not None and gpu.start_event is not None:
            # The span stays open until the request resolves its CUDA events,
            # then ends with the wall-clock end time taken here.
            self.deferred.append((span, end_ns, gpu, attributes))
        else:
            span.end(end_ns)


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
    ) -> None:
        # Not ``telemetry or get_telemetry()``: a hostile object's __bool__ may
        # raise, and anything but a Telemetry fails on every later call.
        self.telemetry = telemetry if isinstance(telemetry, Telemetry) else get_telemetry()
        if telemetry is not None and telemetry is not self.telemetry:
            self.telemetry.values.reject("telemetry", telemetry, "not a Telemetry")
        self.sample_rate: int | None = None
        self.characters: int | None = None
        self._span: Span | None = None
        self._span_config: dict[str, AttributeValue] = {}
        self._metric_config: Mapping[str, AttributeValue] = {}
        self._attributes: dict[str, AttributeValue] = {}
        self._stages = _Stages(self)
        self._measurements: list[Measurement] = []
        self._audio_seconds = 0.0
        self._speech_tokens = 0
        self._chunks = 0
        self._first_audio: float | None = None
        self._last_chunk: float | None = None
        self._playback_end: float | None = None  # when a listener runs out of audio
        self._underrun = 0.0
        self._stalls = 0
        self._backdate: float | None = None
        self._anchor = (time_ns(), perf_counter())
        self._start = 0.0
        self._finished = False
        self._exited = False
        self._entered = False
        self.context: Context = context.get_current()
        self._previous_context = self.context
        self._previous_request: Synthesis | None = None
        self._previous_segment: int | None = None
        self.gpu: RequestGpu | None = None
        self._finalizers: list[Callable[[BaseException | None], None]] = []
        try:
            if start is not None:
                # Compared with perf_counter() on entry: a non-number would raise there.
                self._backdate = self.telemetry.values.number("start", start)
            self._describe(
                model, model_version, sample_rate, kv_cache, streaming, text, characters,
                language, prompt_text, record_text, attributes,
            )  # fmt: skip
        except Exception:
            # Still measured, with the attributes described so far: an unmeasured
            # request would not be current, so a stage left open in it could not
            # be taken off the caller's context when the request ends.
            _log.exception("tts-otel: could not describe the request; it has fewer attributes")
        self._entered = True

    def _describe(
        self, model: object, model_version: object, sample_rate: object, kv_cache: object,
        streaming: object, text: object, characters: object, language: object,
        prompt_text: object, record_text: object, attributes: object,
    ) -> None:  # fmt: skip
        checker = self.telemetry.values
        checked = _Checked(checker)
        model_name = checked.of(semconv.ATTR_MODEL_NAME, model, str) or "unknown"
        rate = checked.of(semconv.ATTR_SAMPLE_RATE, sample_rate, int)
        input_text = checked.of("text", text, str)
        if input_text is not None:
            self.characters = len(input_text)
        elif characters is not None:
            self.characters = checker.count(semconv.ATTR_TEXT_CHARACTERS, characters)
        self.sample_rate = rate
        config: dict[str, AttributeValue | None] = {
            semconv.ATTR_MODEL_NAME: model_name,
            semconv.ATTR_MODEL_VERSION: checked.of(semconv.ATTR_MODEL_VERSION, model_version, str),
            semconv.ATTR_SAMPLE_RATE: rate,
            semconv.ATTR_KV_CACHE: checked.of(semconv.ATTR_KV_CACHE, kv_cache, bool),
            semconv.ATTR_STREAMING: checked.of(semconv.ATTR_STREAMING, streaming, bool) or False,
            semconv.ATTR_TEXT_LENGTH_BIN: (
                semconv.length_bin(self.characters) if self.characters is not None else None
            ),
        }
        # Bounded configuration goes on every span (so stage spans can be
        # grouped by it in InfluxDB) and, guarded, on every metric.
        self._span_config = {k: v for k, v in config.items() if v is not None}
        self._metric_config = self.telemetry.guard.bound(config)
        prompt = checked.of(semconv.ATTR_PROMPT_TEXT_PRESENT, prompt_text, str)
        self._attributes = {
            **self._span_config,
            semconv.GEN_AI_OPERATION_NAME: semconv.GEN_AI_OPERATION_TEXT_TO_SPEECH,
            semconv.GEN_AI_REQUEST_MODEL: model_name,
            semconv.GEN_AI_OUTPUT_TYPE: semconv.GEN_AI_OUTPUT_SPEECH,
            semconv.ATTR_PROMPT_TEXT_PRESENT: bool(prompt and prompt.strip()),
        }
        if self.characters is not None:
            self._attributes[semconv.ATTR_TEXT_CHARACTERS] = self.characters
        spoken = checked.of(semconv.ATTR_LANGUAGE, language, str)
        if spoken is not None:
            self._attributes[semconv.ATTR_LANGUAGE] = spoken
        self._record_text(input_text, record_text)
        if attributes is not None:
            if isinstance(attributes, Mapping):
                self._add_attributes(attributes)
            else:
                checker.reject("attributes", attributes, "not a mapping")

    def _add_attributes(self, attributes: Mapping[object, object]) -> None:
        """The service's extra attributes, one at a time: a bad one costs itself only.

        Keys must be strings (the SDK would drop others, but a str subclass whose
        ``__hash__`` raises would fail the request span's start); values are
        checked by the SDK when the span starts.
        """
        for key, item in list(attributes.items()):
            name = plain(key)
            if isinstance(name, str):
                self._attributes[name] = cast(AttributeValue, plain(item))
            else:
                self.telemetry.values.reject("attributes", key, "key not a str")

    def _record_text(self, text: str | None, record_text: object) -> None:
        mode = self.telemetry.settings.record_text
        record_text = plain(record_text)  # looked up in a dict: a str subclass may not hash
        if record_text is not None:
            known = isinstance(record_text, bool | str) and record_text in _TEXT_MODES
            if not known:
                self.telemetry.values.reject("record_text", record_text, "not a recording mode")
            mode = _TEXT_MODES[record_text] if known else "off"
        if text is not None and mode == "plain":
            self._attributes[semconv.ATTR_TEXT] = text
        elif text is not None and mode == "sha256":
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            self._attributes[semconv.ATTR_TEXT_SHA256] = digest

    # --- lifecycle ----------------------------------------------------------
    def __enter__(self) -> Synthesis:
        now = perf_counter()
        self._start = now if self._backdate is None else min(self._backdate, now)
        if not self._entered:
            return self
        self._anchor = (time_ns(), now)
        try:
            telemetry = self.telemetry
            span = telemetry.tracer.start_span(
                semconv.SPAN_SYNTHESIZE,
                attributes=self._attributes,
                start_time=self._wall_ns(self._start),
            )
            self._previous_context = context.get_current()
            self._previous_request = current_request.get()
            self._previous_segment = current_segment.get()
            self.context = trace.set_span_in_context(span)
            self._span = span
            context.attach(self.context)
            current_request.set(self)
            current_owner.set(self._stages)
            current_segment.set(None)
            if telemetry.cuda is not None:
                self.gpu = RequestGpu(telemetry.cuda, events=telemetry.cuda_events)
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
                previous = self._previous_request
                previous_context = self._previous_context
                previous_segment = self._previous_segment
                while previous is not None and previous._exited:
                    previous_context = previous._previous_context
                    previous_segment = previous._previous_segment
                    previous = previous._previous_request
                current_request.set(previous)
                current_owner.set(None if previous is None else previous._stages)
                current_segment.set(previous_segment)
                context.attach(previous_context)
            else:
                restore_context(self.context, self._previous_context)
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
        self._finished = True
        instruments = self.telemetry.instruments
        measurements = self._measurements
        details = self.telemetry.settings.record_text == "plain"
        failure = mark_error(span, exc, details=details) if exc is not None else None
        if self.gpu is not None:
            self._resolve_gpu(span, measurements)

        outcome = {
            semconv.ATTR_OUTCOME: semconv.OUTCOME_ERROR if failure else semconv.OUTCOME_OK,
            semconv.ATTR_ERROR_TYPE: failure,
        }
        request_attributes = self.telemetry.guard.bound({**self._metric_config, **outcome})
        config = self._metric_config
        ctx = self.context
        measurements.append(
            (instruments.request_duration.record, duration, request_attributes, ctx)
        )
        measurements.append((instruments.requests.add, 1, request_attributes, ctx))
        if self.characters is not None:
            measurements.append((instruments.text_characters.record, self.characters, config, ctx))
        if self._speech_tokens:
            span.set_attribute(semconv.ATTR_SPEECH_TOKENS, self._speech_tokens)
            measurements.append(
                (instruments.speech_tokens.record, self._speech_tokens, config, ctx)
            )
        self._audio_measurements(span, duration, measurements)
        self.telemetry.buffer.push(measurements)
        # The span ends when the duration was taken, not after this bookkeeping:
        # its length and the recorded duration are one number.
        span.end(self._wall_ns(self._start + duration))

    def _audio_measurements(
        self, span: Span, duration: float, measurements: list[Measurement]
    ) -> None:
        instruments, config, ctx = self.telemetry.instruments, self._metric_config, self.context
        if self._first_audio is not None:
            span.set_attribute(semconv.ATTR_TIME_TO_FIRST_AUDIO, self._first_audio)
            measurements.append(
                (instruments.time_to_first_audio.record, self._first_audio, config, ctx)
            )
        if self._chunks:
            span.set_attribute(semconv.ATTR_AUDIO_CHUNKS, self._chunks)
            span.set_attribute(semconv.ATTR_AUDIO_UNDERRUN, self._underrun)
            span.set_attribute(semconv.ATTR_AUDIO_STALLS, self._stalls)
            measurements.append((instruments.audio_underrun.record, self._underrun, config, ctx))
            measurements.append((instruments.audio_stalls.record, self._stalls, config, ctx))
        if self._audio_seconds > 0:
            rtf = duration / self._audio_seconds
            span.set_attribute(semconv.ATTR_AUDIO_DURATION, self._audio_seconds)
            span.set_attribute(semconv.ATTR_REAL_TIME_FACTOR, rtf)
            measurements.append(
                (instruments.audio_duration.record, self._audio_seconds, config, ctx)
            )
            measurements.append((instruments.real_time_factor.record, rtf, config, ctx))

    def _resolve_gpu(self, span: Span, measurements: list[Measurement]) -> None:
        """Request end: read the peak, resolve CUDA events, end the deferred stage spans."""
        gpu = cast(RequestGpu, self.gpu)
        peak = gpu.finish()
        span.set_attribute(semconv.ATTR_GPU_MEMORY_PEAK, peak)
        measurements.append(
            (self.telemetry.instruments.gpu_memory_peak.record, peak, self._metric_config, None)
        )
        record_gpu = self.telemetry.instruments.stage_gpu_duration.record
        for stage_span, end_ns, interval, attributes in self._stages.deferred:
            seconds = gpu.gpu_seconds(interval)
            if seconds is not None:
                stage_span.set_attribute(semconv.ATTR_STAGE_GPU_DURATION, seconds)
                measurements.append((record_gpu, seconds, attributes, None))
            stage_span.end(end_ns)

    def _wall_ns(self, at: float) -> int:
        """A ``perf_counter()`` reading as epoch nanoseconds, on this request's one clock
        pairing, so backdated stages never start before the request does."""
        anchor_ns, anchor = self._anchor
        return anchor_ns - round((anchor - at) * 1e9)

    # --- called by stages ---------------------------------------------------
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
        self, *, samples: int | None = None, sample_rate: int | None = None,
        seconds: float | None = None,
    ) -> None:  # fmt: skip
        """Add produced audio (samples at a rate, or seconds); sets the time to first audio."""
        added = self._seconds(samples, sample_rate, seconds)
        if added is None:
            return
        self._audio_seconds += added
        if self._first_audio is None:
            self._first_audio = perf_counter() - self._start

    def chunk(self, samples: int, sample_rate: int | None = None) -> None:
        """A streamed chunk handed to the client: time to first audio, chunk gaps, and
        underrun: a listener plays from the first chunk on, and waits whenever a chunk
        arrives after the audio before it has run out."""
        added = self._seconds(samples, sample_rate, None)
        if added is None:
            return
        now = perf_counter()
        if self._last_chunk is not None:
            self._measurements.append(
                (
                    self.telemetry.instruments.chunk_interval.record,
                    now - self._last_chunk,
                    self._metric_config,
                    None,
                )
            )
        self._last_chunk = now
        if self._playback_end is None:
            self._playback_end = now + added
        elif now > self._playback_end:
            self._underrun += now - self._playback_end
            self._stalls += 1
            self._playback_end = now + added
        else:
            self._playback_end += added
        self._chunks += 1
        self._audio_seconds += added
        if self._first_audio is None:
            self._first_audio = now - self._start

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

    def _seconds(
        self, samples: int | None, sample_rate: int | None, seconds: float | None
    ) -> float | None:
        checker = self.telemetry.values
        if seconds is not None:
            return checker.number(semconv.ATTR_AUDIO_DURATION, seconds)
        count = checker.count("samples", samples)
        rate = checker.positive(
            semconv.ATTR_SAMPLE_RATE, self.sample_rate if sample_rate is None else sample_rate
        )
        if count is None or rate is None:
            return None
        return count / rate


# `with tts_otel.synthesis(model=..., text=...) as req:` reads as an action;
# it is the class itself, so there is one signature to keep.
synthesis = Synthesis


def current() -> Synthesis | None:
    """The request active in this context, if any (for integrations)."""
    return current_request.get()
