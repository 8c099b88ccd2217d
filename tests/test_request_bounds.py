"""A request's memory is bounded whatever its length, and span attributes in size."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import tts_otel
from tests.fakes import FakeCuda
from tts_otel import semconv
from tts_otel._request_stages import DEFERRED_LIMIT
from tts_otel.config import DEFAULT_ATTRIBUTE_LENGTH
from tts_otel.telemetry import Telemetry
from tts_otel.testing import attributes, capture


@pytest.fixture
def spans_not_kept() -> Iterator[Telemetry]:
    """Real SDK providers whose spans go nowhere: what a request holds is all that grows."""
    telemetry = tts_otel.configure(
        exporters=[InMemoryMetricReader()],
        set_global=False,
        nvml=False,
        cuda=None,
        flush_on_signals=False,
    )
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def _peak_during_request(telemetry: Telemetry, stages: int) -> int:
    tracemalloc.start()
    try:
        with tts_otel.synthesis(model="m", telemetry=telemetry) as req:
            for index in range(stages):
                with req.segment(index), req.stage("acoustic"):
                    pass
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak


def test_a_request_of_200000_stages_holds_a_bounded_amount(spans_not_kept: Telemetry) -> None:
    # Every ended stage span used to stay reachable until the request ended: 200,000
    # of them are hundreds of MB. Bounded, the peak is that of a short request's
    # batches (a few MB), whatever the count.
    peak = _peak_during_request(spans_not_kept, 200_000)
    assert peak < 24 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"
    spans_not_kept.force_flush()
    assert dict(spans_not_kept._report.dropped())["metrics"] == 0


def test_stage_spans_waiting_for_cuda_events_are_bounded() -> None:
    cuda = FakeCuda()
    with capture(cuda=cuda, timing="cuda_events", gpu_memory=False) as cap:
        with tts_otel.synthesis(model="m") as req:
            for _ in range(3 * DEFERRED_LIMIT):
                with req.stage("vocoder"):
                    cuda.gpu_clock += 0.001
                assert len(req._stages.deferred) < DEFERRED_LIMIT
        stages = cap.spans_named(semconv.stage_span_name("vocoder"))
        assert len(stages) == 3 * DEFERRED_LIMIT
        assert all(semconv.ATTR_STAGE_GPU_DURATION in attributes(s) for s in stages)
        (point,) = cap.points(semconv.METRIC_STAGE_GPU_DURATION)
        assert point.count == 3 * DEFERRED_LIMIT


def _text_attribute(**settings: object) -> str:
    with capture(record_text=True, **settings) as cap:
        with tts_otel.synthesis(model="m", text="字" * 10_000_000):
            pass
        root = attributes(cap.spans_named(semconv.SPAN_SYNTHESIZE)[0])
        return str(root[semconv.ATTR_TEXT])


def test_a_10_mb_text_makes_a_bounded_span_by_default() -> None:
    assert len(_text_attribute()) == DEFAULT_ATTRIBUTE_LENGTH


@pytest.mark.parametrize(
    ("variables", "length"),
    [
        ({"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "100"}, 100),
        ({"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "50"}, 50),
        (
            {
                "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "100",
                "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "70",
            },
            70,
        ),
        ({"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": ""}, DEFAULT_ATTRIBUTE_LENGTH),
    ],
)
def test_the_sdk_length_variables_are_respected(
    variables: dict[str, str], length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert len(_text_attribute()) == length


def test_a_text_cut_to_the_span_limit_is_counted() -> None:
    with capture(record_text=True) as cap:
        with tts_otel.synthesis(model="m", text="x" * (DEFAULT_ATTRIBUTE_LENGTH + 1)):
            pass
        with tts_otel.synthesis(model="m", text="x" * DEFAULT_ATTRIBUTE_LENGTH):
            pass
        assert dict(cap.telemetry._report.dropped())["cut"] == 1
