"""Where a request sits in a trace, and what it reports around its stages: a parent that
has ended is not a parent, suppression is honoured, children end within their parent,
audio is counted as the samples the caller got, queue wait is its own figure."""

from __future__ import annotations

import contextvars
import threading

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import tts_otel
from tts_otel import semconv
from tts_otel.testing import TelemetryCapture, attributes


def test_a_request_under_a_span_that_has_ended_is_a_root_linked_to_it(
    cap: TelemetryCapture,
) -> None:
    # A server that starts its worker inside a request (gradio's queue, inside
    # GET /startup-events) leaves that request's span current in every later job.
    tracer = cap.telemetry.tracer_provider.get_tracer("web-server")
    with tracer.start_as_current_span("GET /startup-events") as startup:
        worker_context = contextvars.copy_context()  # the queue worker's, made in there
    ended = startup.get_span_context()

    def job() -> None:
        with tts_otel.synthesis(model="m", text="one click"):
            pass

    for _ in range(3):
        worker = threading.Thread(target=worker_context.copy().run, args=(job,))
        worker.start()
        worker.join()

    requests = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert len(requests) == 3
    assert len({r.context.trace_id for r in requests}) == 3
    for request in requests:
        assert request.parent is None
        assert request.context.trace_id != ended.trace_id
        assert [link.context.span_id for link in request.links] == [ended.span_id]
        assert attributes(request.links[0])[semconv.ATTR_LINK_ENDED_PARENT] is True


def test_a_request_under_an_open_span_or_a_remote_parent_is_its_child(
    cap: TelemetryCapture,
) -> None:
    tracer = cap.telemetry.tracer_provider.get_tracer("web-server")
    with tracer.start_as_current_span("POST /tts") as http:
        with tts_otel.synthesis(model="m", text="in a live request"):
            pass
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(remote)):
        with tts_otel.synthesis(model="m", text="from traceparent"):
            pass

    first, second = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert first.parent is not None
    assert first.parent.span_id == http.get_span_context().span_id
    assert not first.links
    assert second.parent is not None
    assert second.parent.span_id == 0x5678
    assert second.context.trace_id == 0x1234


def test_suppress_instrumentation_silences_requests_and_stages(cap: TelemetryCapture) -> None:
    with suppress_instrumentation():
        with tts_otel.synthesis(model="m", text="quiet") as request:
            with request.stage("acoustic"):
                pass
            request.audio(samples=24000, sample_rate=24000)
        with tts_otel.stage("vocoder"):
            pass
    assert cap.spans() == []
    assert cap.histogram(semconv.METRIC_REQUEST_DURATION).count == 0


def test_children_end_at_or_before_their_parent(cap: TelemetryCapture) -> None:
    for _ in range(50):
        with tts_otel.synthesis(model="m", text="x") as request:
            group = request.stage("speaker_embedding").start(current=False)
            child = request.stage("speaker_embedding.spk_embedding", parent=group)
            with child:
                pass
            group.end()
    by_id = {span.context.span_id: span for span in cap.spans()}
    checked = 0
    for span in cap.spans():
        if span.parent is not None and span.parent.span_id in by_id:
            parent = by_id[span.parent.span_id]
            assert span.end_time is not None
            assert parent.end_time is not None
            assert span.end_time <= parent.end_time, (span.name, parent.name)
            assert span.start_time is not None
            assert parent.start_time is not None
            assert span.start_time >= parent.start_time, (span.name, parent.name)
            checked += 1
    assert checked == 100


def test_audio_duration_is_total_samples_over_the_rate(cap: TelemetryCapture) -> None:
    sizes = [2400] * 21  # 21 chunks of 0.1 s: a float sum reads 2.0999999999999996
    with tts_otel.synthesis(model="m", sample_rate=24000, streaming=True) as request:
        for size in sizes:
            request.chunk(size)
    span = attributes(cap.spans_named(semconv.SPAN_SYNTHESIZE)[0])
    assert span[semconv.ATTR_AUDIO_DURATION] == 2.1
    assert list(span[semconv.ATTR_AUDIO_CHUNK_SAMPLES]) == sizes
    assert cap.histogram(semconv.METRIC_AUDIO_DURATION).sum == 2.1


def test_queue_wait_is_its_own_figure_outside_the_request(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m", text="queued") as request:
        request.queue_wait(4.5)
        request.queue_wait(-1)  # dropped, counted
    span = cap.spans_named(semconv.SPAN_SYNTHESIZE)[0]
    assert attributes(span)[semconv.ATTR_QUEUE_WAIT] == 4.5
    wait = cap.histogram(semconv.METRIC_QUEUE_WAIT)
    assert (wait.count, wait.sum) == (1, 4.5)
    assert cap.histogram(semconv.METRIC_REQUEST_DURATION).sum < 4.5


def test_the_request_kind_is_a_bounded_label(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m", text="a"):
        pass
    with tts_otel.synthesis(model="m", kind=semconv.REQUEST_KIND_RESYNTHESIS):
        pass
    kinds = {semconv.ATTR_REQUEST_KIND: semconv.REQUEST_KIND_RESYNTHESIS}
    assert cap.histogram(semconv.METRIC_REQUEST_DURATION, kinds).count == 1
    synthesis = {semconv.ATTR_REQUEST_KIND: semconv.REQUEST_KIND_SYNTHESIS}
    assert cap.histogram(semconv.METRIC_REQUEST_DURATION, synthesis).count == 1
