"""One synthesis request: the ``tts.synthesize`` span and the request-level metrics."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import Token
from time import perf_counter
from types import TracebackType
from typing import Any, cast

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._context import current_request, current_segment
from tts_otel.config import TextRecording
from tts_otel.gpu import GpuInterval, RequestGpu
from tts_otel.metric_buffer import Measurement
from tts_otel.stages import Stage, mark_error
from tts_otel.telemetry import Telemetry, get_telemetry

_log = logging.getLogger(__name__)

_TEXT_MODES: dict[object, TextRecording] = {
    True: "plain",
    False: "off",
    "plain": "plain",
    "off": "off",
    "hash": "sha256",
    "sha256": "sha256",
}


class Synthesis:
    """One request: enter it with ``with``; stages, audio and tokens are recorded on it.

    The input text is measured (characters, length bin) but not exported
    unless ``record_text`` asks for it (``True`` or ``"hash"``).
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
    ) -> None:
        self.telemetry = telemetry or get_telemetry()
        checker = self.telemetry.values
        if text is not None and not isinstance(text, str):
            checker.reject("text", text, "not a str")
            text = None
        if text is not None:
            characters = len(text)
        elif characters is not None:
            characters = checker.count(semconv.ATTR_TEXT_CHARACTERS, characters)
        self.sample_rate = sample_rate
        self.characters = characters
        config: dict[str, AttributeValue | None] = {
            semconv.ATTR_MODEL_NAME: model,
            semconv.ATTR_MODEL_VERSION: model_version,
            semconv.ATTR_SAMPLE_RATE: sample_rate,
            semconv.ATTR_KV_CACHE: kv_cache,
            semconv.ATTR_STREAMING: streaming,
            semconv.ATTR_TEXT_LENGTH_BIN: (
                semconv.length_bin(characters) if characters is not None else None
            ),
        }
        # Bounded configuration goes on every span (so stage spans can be
        # grouped by it in InfluxDB) and, guarded, on every metric.
        self._span_config = {k: v for k, v in config.items() if v is not None}
        self._metric_config = self.telemetry.guard.bound(config)
        self._stage_attributes: dict[str, dict[str, AttributeValue]] = {}
        self._stage_metrics: dict[str, Mapping[str, AttributeValue]] = {}

        self._attributes: dict[str, AttributeValue] = {
            **self._span_config,
            semconv.GEN_AI_OPERATION_NAME: semconv.GEN_AI_OPERATION_TEXT_TO_SPEECH,
            semconv.GEN_AI_REQUEST_MODEL: model,
            semconv.GEN_AI_OUTPUT_TYPE: semconv.GEN_AI_OUTPUT_SPEECH,
            semconv.ATTR_PROMPT_TEXT_PRESENT: bool(prompt_text),
        }
        if characters is not None:
            self._attributes[semconv.ATTR_TEXT_CHARACTERS] = characters
        if language is not None:
            self._attributes[semconv.ATTR_LANGUAGE] = language
        mode = self.telemetry.settings.record_text
        if record_text is not None:
            mode = _TEXT_MODES.get(record_text, "off")
        if text is not None and mode == "plain":
            self._attributes[semconv.ATTR_TEXT] = text
        elif text is not None and mode == "sha256":
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            self._attributes[semconv.ATTR_TEXT_SHA256] = digest
        if attributes:
            self._attributes.update(attributes)

        self._measurements: list[Measurement] = []
        self._deferred: list[tuple[Span, int, GpuInterval, Mapping[str, AttributeValue]]] = []
        self._audio_seconds = 0.0
        self._speech_tokens = 0
        self._chunks = 0
        self._first_audio: float | None = None
        self._last_chunk: float | None = None
        self._span: Span | None = None
        self._tokens: tuple[object, object] | None = None
        self._start = 0.0
        self._finished = False
        self.context: Context = context.get_current()
        self.gpu: RequestGpu | None = None
        self._finalizers: list[Callable[[BaseException | None], None]] = []
        self._segment_token: Token[int | None] | None = None

    # --- lifecycle ----------------------------------------------------------
    def __enter__(self) -> Synthesis:
        try:
            telemetry = self.telemetry
            span = telemetry.tracer.start_span(semconv.SPAN_SYNTHESIZE, attributes=self._attributes)
            self._span = span
            self.context = trace.set_span_in_context(span)
            self._tokens = (context.attach(self.context), current_request.set(self))
            if telemetry.cuda is not None:
                self.gpu = RequestGpu(telemetry.cuda, events=telemetry.cuda_events)
        except Exception:
            _log.exception("tts-otel: could not start the request span; it runs unmeasured")
        self._start = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = perf_counter() - self._start
        span = self._span
        if span is None:
            return
        try:
            self._finish(span, duration, exc)
        except Exception:
            _log.exception("tts-otel: could not record the request")
        finally:
            # Whatever failed above, the caller's context must not keep this request.
            if self._segment_token is not None:
                current_segment.reset(self._segment_token)
            if self._tokens is not None:
                context_token, request_token = self._tokens
                current_request.reset(cast(Any, request_token))
                context.detach(cast(Any, context_token))

    def _finish(self, span: Span, duration: float, exc: BaseException | None) -> None:
        for finalizer in self._finalizers:
            finalizer(exc)
        self._finished = True
        instruments = self.telemetry.instruments
        measurements = self._measurements
        failure = mark_error(span, exc) if exc is not None else None
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
        if self._first_audio is not None:
            span.set_attribute(semconv.ATTR_TIME_TO_FIRST_AUDIO, self._first_audio)
            measurements.append(
                (instruments.time_to_first_audio.record, self._first_audio, config, ctx)
            )
        if self._chunks:
            span.set_attribute(semconv.ATTR_AUDIO_CHUNKS, self._chunks)
        if self._audio_seconds > 0:
            rtf = duration / self._audio_seconds
            span.set_attribute(semconv.ATTR_AUDIO_DURATION, self._audio_seconds)
            span.set_attribute(semconv.ATTR_REAL_TIME_FACTOR, rtf)
            measurements.append(
                (instruments.audio_duration.record, self._audio_seconds, config, ctx)
            )
            measurements.append((instruments.real_time_factor.record, rtf, config, ctx))
        self.telemetry.buffer.push(measurements)
        span.end()

    def _resolve_gpu(self, span: Span, measurements: list[Measurement]) -> None:
        """Request end: read the peak, resolve CUDA events, end the deferred stage spans."""
        gpu = cast(RequestGpu, self.gpu)
        peak = gpu.finish()
        span.set_attribute(semconv.ATTR_GPU_MEMORY_PEAK, peak)
        measurements.append(
            (self.telemetry.instruments.gpu_memory_peak.record, peak, self._metric_config, None)
        )
        record_gpu = self.telemetry.instruments.stage_gpu_duration.record
        for stage_span, end_ns, interval, attributes in self._deferred:
            seconds = gpu.gpu_seconds(interval)
            if seconds is not None:
                stage_span.set_attribute(semconv.ATTR_STAGE_GPU_DURATION, seconds)
                measurements.append((record_gpu, seconds, attributes, None))
            stage_span.end(end_ns)

    # --- called by stages ---------------------------------------------------
    def stage(self, name: str, parent: Stage | None = None) -> Stage:
        """A stage of this request: ``with req.stage("acoustic"): ...``."""
        return Stage(name, self, parent)

    @contextlib.contextmanager
    def segment(self, index: int) -> Iterator[None]:
        """Stages inside carry ``tts.segment.index``: one set of stage spans per text segment."""
        token = current_segment.set(index)
        try:
            yield
        finally:
            current_segment.reset(token)

    def begin_segment(self, index: int | None) -> None:
        """Stages from now on carry ``tts.segment.index`` (none after ``None``), until the next
        call or the request end. For integrations that cannot wrap a library's segment loop
        in ``segment()``."""
        token = current_segment.set(index)
        if self._segment_token is None:
            self._segment_token = token

    def add_finalizer(self, finalizer: Callable[[BaseException | None], None]) -> None:
        """Call ``finalizer(error)`` when the request ends, before it is recorded."""
        self._finalizers.append(finalizer)

    def stage_span_attributes(self, stage: str) -> dict[str, AttributeValue]:
        attributes = self._stage_attributes.get(stage)
        if attributes is None:
            attributes = {**self._span_config, semconv.ATTR_STAGE: stage}
            self._stage_attributes[stage] = attributes
        return attributes

    def stage_metric_attributes(
        self, stage: str, failure: str | None
    ) -> Mapping[str, AttributeValue]:
        # Segments repeat stages: successful runs reuse one guarded mapping.
        cached = self._stage_metrics.get(stage) if failure is None else None
        if cached is not None:
            return cached
        attributes = self.telemetry.guard.bound(
            {**self._metric_config, semconv.ATTR_STAGE: stage, semconv.ATTR_ERROR_TYPE: failure}
        )
        if failure is None:
            self._stage_metrics[stage] = attributes
        return attributes

    def stage_finished(
        self,
        span: Span,
        ctx: Context,
        end_ns: int,
        duration: float,
        attributes: Mapping[str, AttributeValue],
        gpu: GpuInterval | None,
    ) -> None:
        measurement = (self.telemetry.instruments.stage_duration.record, duration, attributes, ctx)
        if self._finished:
            span.end(end_ns)
            self.telemetry.buffer.push([measurement])
            return
        self._measurements.append(measurement)
        if gpu is not None and gpu.start_event is not None:
            # The span stays open until the request resolves its CUDA events,
            # then ends with the wall-clock end time taken here.
            self._deferred.append((span, end_ns, gpu, attributes))
        else:
            span.end(end_ns)

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
        """A streamed chunk handed to the client: time to first audio and chunk gaps."""
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
        self._chunks += 1
        self._audio_seconds += added
        if self._first_audio is None:
            self._first_audio = now - self._start

    def speech_tokens(self, count: int) -> None:
        """Add speech tokens generated by the acoustic model."""
        checked = self.telemetry.values.count(semconv.ATTR_SPEECH_TOKENS, count)
        if checked is not None:
            self._speech_tokens += checked

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """An extra attribute on the request span only (never a metric label)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

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
