"""A request as its stages see it (``_context.StageOwner``): the attributes they
carry, the request's one clock pairing, and where their durations go. Kept off
the public surface of :class:`~tts_otel.request.Synthesis`, which sets
``context``, ``gpu`` and ``anchor`` when it starts and ``closed`` when it ends."""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter, time_ns

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._describe import Description
from tts_otel._metric_buffer import Measurement
from tts_otel.gpu.cuda import GpuInterval, RequestGpu
from tts_otel.telemetry import Telemetry

# A request's stage measurements go to the metric buffer in batches of this many, and
# at most this many stage spans wait for their CUDA events: each measurement holds its
# stage's context (the exemplar's span), so a request of a million segments held every
# ended stage span until it ended (3.5 GiB). Bounded, its memory does not grow with
# its length; a batch is still one append to the buffer, not one per stage.
MEASUREMENT_BATCH = 512
DEFERRED_LIMIT = 1024


class RequestStages:
    def __init__(self, telemetry: Telemetry, description: Description) -> None:
        self.telemetry = telemetry
        self._description = description
        self.context: Context = otel_context.get_current()
        self.gpu: RequestGpu | None = None
        self.anchor = (time_ns(), perf_counter())
        self.measurements: list[Measurement] = []  # pushed in batches, the rest at the end
        self.closed = False
        # Stage spans waiting for the request to resolve their CUDA events.
        self.deferred: list[tuple[Span, int, GpuInterval, Mapping[str, AttributeValue]]] = []
        self._span_attributes: dict[str, Mapping[str, AttributeValue]] = {}
        self._metric_attributes: dict[str, Mapping[str, AttributeValue]] = {}

    @property
    def error_details(self) -> bool:
        """Exception messages and stack traces only where this request records plain text."""
        mode = self._description.text_mode
        return (self.telemetry.settings.record_text if mode is None else mode) == "plain"

    def wall_ns(self, at: float) -> int:
        """A ``perf_counter()`` reading as epoch nanoseconds, on this request's one clock
        pairing, so backdated stages never start before the request does."""
        anchor_ns, anchor = self.anchor
        return anchor_ns - round((anchor - at) * 1e9)

    def span_attributes(self, stage: str) -> Mapping[str, AttributeValue]:
        attributes = self._span_attributes.get(stage)
        if attributes is None:
            attributes = {**self._description.span_config, semconv.ATTR_STAGE: stage}
            self._span_attributes[stage] = attributes
        return attributes

    def metric_attributes(self, stage: str, failure: str | None) -> Mapping[str, AttributeValue]:
        # Segments repeat stages: successful runs reuse one guarded mapping.
        cached = self._metric_attributes.get(stage) if failure is None else None
        if cached is not None:
            return cached
        attributes = self.telemetry.guard.bound(
            {
                **self._description.metric_config,
                semconv.ATTR_STAGE: stage,
                semconv.ATTR_ERROR_TYPE: failure,
            }
        )
        if failure is None:
            self._metric_attributes[stage] = attributes
        return attributes

    def finished(
        self,
        span: Span,
        context: Context,
        end_ns: int,
        duration: float,
        attributes: Mapping[str, AttributeValue],
        gpu: GpuInterval | None,
    ) -> None:
        measurement = (
            self.telemetry.instruments.stage_duration.record,
            duration,
            attributes,
            context,
        )
        if self.closed:
            span.end(end_ns)
            self.telemetry.buffer.push([measurement])
            return
        self.measurements.append(measurement)
        if gpu is not None and gpu.start_event is not None:
            # The span stays open until the request resolves its CUDA events,
            # then ends with the wall-clock end time taken here.
            self.deferred.append((span, end_ns, gpu, attributes))
            if len(self.deferred) >= DEFERRED_LIMIT and self.gpu is not None:
                # The oldest half ran a thousand stages ago: their events are done,
                # and resolving them waits for nothing the request still runs.
                half = DEFERRED_LIMIT // 2
                self._resolve_stages(self.gpu, self.deferred[:half])
                del self.deferred[:half]
        else:
            span.end(end_ns)
        if len(self.measurements) >= MEASUREMENT_BATCH:
            self.telemetry.buffer.push(self.measurements)
            self.measurements = []

    def resolve_gpu(self, span: Span) -> None:
        """Request end: its peak memory; the CUDA events of its stages, whose spans end now."""
        gpu = self.gpu
        if gpu is None:
            return
        instruments = self.telemetry.instruments
        peak = gpu.finish()
        span.set_attribute(semconv.ATTR_GPU_MEMORY_PEAK, peak)
        config = self._description.metric_config
        self.measurements.append((instruments.gpu_memory_peak.record, peak, config, None))
        self._resolve_stages(gpu, self.deferred)
        self.deferred = []

    def _resolve_stages(
        self,
        gpu: RequestGpu,
        stages: list[tuple[Span, int, GpuInterval, Mapping[str, AttributeValue]]],
    ) -> None:
        """Their CUDA events as GPU seconds (span attribute and measurement); their spans end."""
        record = self.telemetry.instruments.stage_gpu_duration.record
        for stage_span, end_ns, interval, attributes in stages:
            seconds = gpu.gpu_seconds(interval)
            if seconds is not None:
                stage_span.set_attribute(semconv.ATTR_STAGE_GPU_DURATION, seconds)
                self.measurements.append((record, seconds, attributes, None))
            stage_span.end(end_ns)
