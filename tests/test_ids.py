"""Trace and span ids stay unique whatever the service does to ``random``'s seed."""

from __future__ import annotations

import os
import random
import threading

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

import tts_otel
from tts_otel import semconv
from tts_otel.ids import SeedProofIdGenerator
from tts_otel.testing import TelemetryCapture


def _seeded_requests(count: int) -> None:
    """GLM-TTS seeds ``random`` before every segment; some services before every request."""
    for _ in range(count):
        random.seed(0)
        with tts_otel.synthesis(model="m") as req:
            for _segment in range(3):
                random.seed(0)
                with req.stage("acoustic"):
                    random.seed(0)


def test_seeding_random_before_every_request_and_stage_repeats_no_id(
    cap: TelemetryCapture,
) -> None:
    threads = [threading.Thread(target=_seeded_requests, args=(5,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    _seeded_requests(5)
    for thread in threads:
        thread.join()
    spans = cap.spans()
    assert len(spans) == 25 * 4
    assert len({s.context.span_id for s in spans}) == len(spans)
    roots = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert len({r.context.trace_id for r in roots}) == 25


def test_a_provider_the_application_built_gets_seed_proof_ids_unless_it_chose_its_own() -> None:
    default = TracerProvider()
    telemetry = tts_otel.configure(tracer_provider=default, set_global=False, nvml=False)
    try:
        assert isinstance(default.id_generator, SeedProofIdGenerator)
    finally:
        telemetry.shutdown()

    class Chosen(IdGenerator):
        def generate_span_id(self) -> int:
            return 1

        def generate_trace_id(self) -> int:
            return 1

    chosen = Chosen()
    own = TracerProvider(id_generator=chosen)
    telemetry = tts_otel.configure(tracer_provider=own, set_global=False, nvml=False)
    try:
        assert own.id_generator is chosen  # type: ignore[comparison-overlap]
    finally:
        telemetry.shutdown()


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = tts_otel.configure(tracer_provider=provider, set_global=False, nvml=False)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next trace id, then leave without cleanup
        with tts_otel.synthesis(model="m", telemetry=telemetry):
            pass
        os.write(write, exporter.get_finished_spans()[0].context.trace_id.to_bytes(16, "big"))
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = int.from_bytes(os.read(read, 16), "big")
    with tts_otel.synthesis(model="m", telemetry=telemetry):
        pass
    telemetry.shutdown()
    assert exporter.get_finished_spans()[-1].context.trace_id != child_id
