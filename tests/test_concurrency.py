"""Stages find their request across decorators, asyncio tasks and threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import tts_otel
from tts_otel import semconv
from tts_otel.testing import TelemetryCapture, attributes


@tts_otel.stage("vocoder")
def vocode(samples: int) -> int:
    return samples * 2


@tts_otel.stage("acoustic")
async def generate(tokens: int) -> int:
    await asyncio.sleep(0.001)
    return tokens + 1


def _trace_of(cap: TelemetryCapture, span_name: str) -> dict[int, int]:
    """span id -> trace id of every span with this name."""
    return {
        s.context.span_id: s.context.trace_id
        for s in cap.spans_named(span_name)
        if s.context is not None
    }


def test_decorated_sync_function_keeps_its_result_and_joins_the_request(
    cap: TelemetryCapture,
) -> None:
    with tts_otel.synthesis(model="m") as req:
        assert vocode(3) == 6
    vocoder = cap.spans_named("tts.vocoder")[0]
    assert vocoder.parent is not None
    assert vocoder.parent.span_id == req.span.get_span_context().span_id
    assert vocode.__name__ == "vocode"


def test_decorated_function_starts_a_fresh_run_per_call(cap: TelemetryCapture) -> None:
    with tts_otel.synthesis(model="m"):
        vocode(1)
        vocode(2)
    assert len(cap.spans_named("tts.vocoder")) == 2


async def _one_request(index: int) -> str:
    with tts_otel.synthesis(model="m", text=str(index)) as req:
        await generate(index)
        await asyncio.sleep(0)
        with req.stage("vocoder"):
            await asyncio.sleep(0.001)
    return format(req.span.get_span_context().trace_id, "032x")


@pytest.mark.asyncio
async def test_concurrent_asyncio_requests_do_not_mix(cap: TelemetryCapture) -> None:
    await asyncio.gather(*(_one_request(i) for i in range(8)))
    requests = {s.context.span_id: s.context.trace_id for s in cap.spans_named("tts.synthesize")}
    assert len(requests) == 8
    for name in ("tts.acoustic", "tts.vocoder"):
        spans = cap.spans_named(name)
        assert len(spans) == 8
        for span in spans:
            assert span.parent is not None
            # Parent is the request of the same trace, not another task's.
            assert requests[span.parent.span_id] == span.context.trace_id


def test_concurrent_threads_do_not_mix(cap: TelemetryCapture) -> None:
    barrier = threading.Barrier(4)

    def work(index: int) -> None:
        with tts_otel.synthesis(model="m", text=str(index)) as req:
            barrier.wait()
            with req.stage("acoustic"):
                barrier.wait()
            vocode(index)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    requests = {s.context.span_id: s.context.trace_id for s in cap.spans_named("tts.synthesize")}
    for name in ("tts.acoustic", "tts.vocoder"):
        for span in cap.spans_named(name):
            assert span.parent is not None
            assert requests[span.parent.span_id] == span.context.trace_id
    assert cap.histogram(semconv.METRIC_STAGE_DURATION).count == 8


def test_stage_in_a_worker_thread_parents_on_the_request(cap: TelemetryCapture) -> None:
    # A fresh thread does not inherit contextvars: req.stage names its request explicitly.
    with tts_otel.synthesis(model="m") as req:
        worker = threading.Thread(
            target=lambda: req.stage("vocoder").__enter__().__exit__(None, None, None)
        )
        worker.start()
        worker.join()
    vocoder = cap.spans_named("tts.vocoder")[0]
    assert vocoder.parent is not None
    assert vocoder.parent.span_id == req.span.get_span_context().span_id
    assert attributes(vocoder)[semconv.ATTR_MODEL_NAME] == "m"
