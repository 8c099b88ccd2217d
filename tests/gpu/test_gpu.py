"""GPU paths with fakes (no GPU here or in CI): peak memory, CUDA-event timing, NVML gauges."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

import tts_otel
from tests.fakes import FakeCuda, FakeDevice, FakeNvml, prometheus_telemetry
from tts_otel import semconv
from tts_otel.gpu.cuda import load_cuda_runtime
from tts_otel.gpu.nvml import NvmlSampler, default_reader, start_nvml_sampler
from tts_otel.testing import attributes, capture

GIB = 1 << 30


def test_peak_memory_per_request_and_per_nested_stage() -> None:
    cuda = FakeCuda(allocated=1 * GIB)  # weights already resident
    with capture(cuda=cuda) as cap:
        with tts_otel.synthesis(model="m") as req:
            with req.stage("acoustic"):
                with req.stage("acoustic.llm"):
                    cuda.allocate(3 * GIB)  # KV cache
                    cuda.free(3 * GIB)
                with req.stage("acoustic.flow"):
                    cuda.allocate(1 * GIB)
                    cuda.free(1 * GIB)
            with req.stage("vocoder"):
                cuda.allocate(2 * GIB)
                cuda.free(2 * GIB)
    spans = {s.name: s for s in cap.spans()}
    assert attributes(spans["tts.synthesize"])[semconv.ATTR_GPU_MEMORY_PEAK] == 4 * GIB
    peak = cap.histogram(semconv.METRIC_GPU_MEMORY_PEAK)
    assert (peak.count, peak.sum) == (1, 4 * GIB)
    metric = cap.metrics()[semconv.METRIC_GPU_MEMORY_PEAK]
    assert metric.unit == "By"


def test_a_peak_after_a_nested_stage_still_counts_for_the_request() -> None:
    # When the inner stage ends, every open interval holds the same peak. Intervals
    # compared by value made the request's interval the one closed in its place, so
    # the outer stage's later, higher peak never reached the request.
    cuda = FakeCuda(allocated=1 * GIB)
    with capture(cuda=cuda) as cap:
        with tts_otel.synthesis(model="m") as req:
            with req.stage("acoustic"):
                with req.stage("acoustic.llm"):
                    cuda.allocate(1 * GIB)
                    cuda.free(1 * GIB)
                cuda.allocate(4 * GIB)
                cuda.free(4 * GIB)
    (request,) = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert attributes(request)[semconv.ATTR_GPU_MEMORY_PEAK] == 5 * GIB


def test_leak_shows_as_growing_request_peaks() -> None:
    cuda = FakeCuda(allocated=GIB)
    with capture(cuda=cuda) as cap:
        for _ in range(3):
            with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
                cuda.allocate(GIB // 2)  # never freed: a leak
    peaks = [attributes(s)[semconv.ATTR_GPU_MEMORY_PEAK] for s in cap.spans_named("tts.synthesize")]
    assert peaks == [GIB + GIB // 2, 2 * GIB, 2 * GIB + GIB // 2]


def test_cuda_events_give_gpu_time_resolved_at_request_end() -> None:
    cuda = FakeCuda()
    with capture(cuda=cuda, timing="cuda_events") as cap:
        with tts_otel.synthesis(model="m") as req:
            with req.stage("acoustic"):
                cuda.gpu_clock += 0.75  # kernels queued here run 0.75 s on the GPU
            with req.stage("vocoder"):
                cuda.gpu_clock += 0.25
            # Inside the request nothing has waited for the GPU yet.
            assert cuda.synchronized == 0
            assert not cap.spans_named("tts.acoustic")  # held open until the events resolve
    spans = {s.name: s for s in cap.spans()}
    assert attributes(spans["tts.acoustic"])[semconv.ATTR_STAGE_GPU_DURATION] == 0.75
    assert attributes(spans["tts.vocoder"])[semconv.ATTR_STAGE_GPU_DURATION] == 0.25
    gpu = cap.histogram(semconv.METRIC_STAGE_GPU_DURATION, {semconv.ATTR_STAGE: "acoustic"})
    assert (gpu.count, gpu.sum) == (1, 0.75)
    # The span keeps its own wall-clock end, not the request's.
    acoustic, vocoder = spans["tts.acoustic"], spans["tts.vocoder"]
    assert acoustic.end_time is not None
    assert vocoder.start_time is not None
    assert acoustic.end_time <= vocoder.start_time


def test_wall_timing_records_no_events() -> None:
    cuda = FakeCuda()
    with capture(cuda=cuda) as cap:
        with tts_otel.synthesis(model="m") as req, req.stage("acoustic"):
            pass
    assert "record" not in cuda.log
    assert semconv.ATTR_STAGE_GPU_DURATION not in attributes(cap.spans_named("tts.acoustic")[0])


def test_cuda_events_without_cuda_fall_back_to_wall_time(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), capture(cuda=None, timing="cuda_events") as cap:
        with tts_otel.synthesis(model="m") as req, req.stage("acoustic"):
            pass
    assert cap.spans_named("tts.acoustic")
    assert "using wall time" in caplog.text


def test_no_cuda_here_means_no_runtime_and_one_line(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    load_cuda_runtime.cache_clear()
    with caplog.at_level(logging.INFO, logger="tts_otel.gpu"):
        assert load_cuda_runtime() is None
        assert load_cuda_runtime() is None
    assert len(caplog.records) == 1
    assert "no CUDA device" in caplog.records[0].getMessage()


def _gauges(reader: InMemoryMetricReader) -> dict[str, dict[str, float]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, dict[str, float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                values = found.setdefault(f"{metric.name} [{metric.unit}]", {})
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    values[str(attributes(point)[semconv.ATTR_HW_ID])] = point.value
    return found


def test_nvml_gauges_convert_units_per_device() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    nvml = FakeNvml(
        [
            FakeDevice(
                "H100",
                used=10 * GIB,
                total=80 * GIB,
                utilization=87.0,
                power_mw=312_500,
                temperature=61,
            ),
            FakeDevice(
                "H100",
                used=1 * GIB,
                total=80 * GIB,
                utilization=0.0,
                power_mw=71_999,
                temperature=35,
            ),
        ]
    )
    NvmlSampler(meter, nvml)
    assert _gauges(reader) == {
        "hw.gpu.memory.usage [By]": {"0": 10 * GIB, "1": 1 * GIB},
        "hw.gpu.memory.limit [By]": {"0": 80 * GIB, "1": 80 * GIB},
        "hw.gpu.utilization [1]": {"0": 0.87, "1": 0.0},
        "hw.power [W]": {"0": 312.5, "1": 71.999},  # true division, no floor
        "hw.temperature [Cel]": {"0": 61, "1": 35},
    }
    nvml.devices[0].used = 20 * GIB
    assert _gauges(reader)["hw.gpu.memory.usage [By]"]["0"] == 20 * GIB


# NVML's clock event reason bits (nvmlClocksEventReason* in pynvml).
IDLE, APP_CLOCKS, SW_POWER_CAP, HW_SLOWDOWN = 0x1, 0x2, 0x4, 0x8
SYNC_BOOST, SW_THERMAL, HW_THERMAL, POWER_BRAKE = 0x10, 0x20, 0x40, 0x80
THROTTLE_REASONS = (
    "thermal",
    "sw_thermal",
    "hw_slowdown",
    "power",
    "power_brake",
    "board_limit",
    "reliability",
)


def _throttled(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    """(hw.id, reason) -> 0 or 1, from the tts.gpu.throttled gauge."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (str(labels[semconv.ATTR_HW_ID]), str(labels[semconv.ATTR_GPU_THROTTLE_REASON])): (
            point.value
        )
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == semconv.METRIC_GPU_THROTTLED
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint) and (labels := attributes(point))
    }


def test_nvml_throttle_reasons_become_one_bounded_gauge_per_reason() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    hot = FakeDevice("H100", 1, 2, 3, 4, 5, throttle_reasons=HW_THERMAL | SW_POWER_CAP | IDLE)
    cool = FakeDevice("H100", 1, 2, 3, 4, 5, throttle_reasons=IDLE | APP_CLOCKS | SYNC_BOOST)
    nvml = FakeNvml([hot, cool])
    NvmlSampler(meter, nvml)
    found = _throttled(reader)
    # Every reason of every device, 0 or 1: a series that vanishes could not be alerted on
    # for 10 minutes. Idle, application clocks and sync boost are settings, not throttling.
    assert found == {
        (device, reason): float(device == "0" and reason in ("thermal", "power"))
        for device in ("0", "1")
        for reason in THROTTLE_REASONS
    }
    hot.throttle_reasons = SW_THERMAL | HW_SLOWDOWN | POWER_BRAKE
    again = _throttled(reader)
    assert {reason for (device, reason), on in again.items() if on} == {
        "sw_thermal",
        "hw_slowdown",
        "power_brake",
    }


def test_without_nvml_support_for_throttle_reasons_nothing_is_exported_after_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    nvml = FakeNvml([FakeDevice("T4", 1, 2, 3, 4, 5), FakeDevice("T4", 1, 2, 3, 4, 5)])
    with caplog.at_level(logging.INFO, logger="tts_otel.gpu.nvml"):
        sampler = NvmlSampler(meter, nvml)
        assert _throttled(reader) == {}
        reader.get_metrics_data()
    assert sampler.enabled  # the other gauges go on
    assert _gauges(reader)["hw.temperature [Cel]"] == {"0": 5, "1": 5}
    assert [r.getMessage() for r in caplog.records] == [
        "tts-otel: NVML reports no clock throttle reasons on GPU 0, 1 (Not Supported); "
        "tts.gpu.throttled is off there"
    ]


def test_throttling_reaches_prometheus_under_the_name_the_alert_reads() -> None:
    nvml = FakeNvml([FakeDevice("H100", 1, 2, 3, 4, 5, throttle_reasons=HW_THERMAL)])
    telemetry, scrape = prometheus_telemetry(nvml_reader=nvml)
    try:
        samples = scrape()
    finally:
        telemetry.shutdown()
    device = {"hw_id": "0", "hw_name": "H100", "hw_type": "gpu"}
    assert ({**device, "tts_gpu_throttle_reason": "thermal"}, 1.0) in samples["tts_gpu_throttled"]
    assert ({**device, "tts_gpu_throttle_reason": "power"}, 0.0) in samples["tts_gpu_throttled"]
    assert ({**device}, 5.0) in samples["hw_temperature_celsius"]


def test_nvml_failure_turns_the_sampler_off_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    nvml = FakeNvml([FakeDevice("A10", 1, 2, 3, 4, 5)])
    sampler = NvmlSampler(meter, nvml)
    nvml.fail = True
    with caplog.at_level(logging.WARNING, logger="tts_otel.gpu.nvml"):
        for _ in range(3):
            reader.get_metrics_data()
    assert not sampler.enabled
    assert len(caplog.records) == 1


def test_no_nvml_driver_here_means_no_sampler_and_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter = MeterProvider().get_meter("t")
    default_reader.cache_clear()
    with caplog.at_level(logging.INFO, logger="tts_otel.gpu.nvml"):
        sampler = start_nvml_sampler(meter)
        start_nvml_sampler(meter)  # a second handle does not probe, nor log, again
    if sampler is not None:
        pytest.skip("this machine has an NVIDIA driver")
    assert len(caplog.records) == 1
    assert "GPU gauges are off" in caplog.records[0].getMessage()


def test_configure_with_fake_nvml_exports_gauges() -> None:
    nvml = FakeNvml(
        [FakeDevice("L4", used=GIB, total=24 * GIB, utilization=50, power_mw=1000, temperature=40)]
    )
    with capture(nvml=True, nvml_reader=nvml) as cap:
        assert cap.points(semconv.METRIC_HW_GPU_MEMORY_LIMIT)[0].value == 24 * GIB


def test_without_torch_everything_but_the_gpu_works_after_one_line() -> None:
    import subprocess
    import sys

    script = """
import logging, sys
sys.modules["torch"] = None  # as if torch were not installed
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
import tts_otel
from tts_otel.gpu.cuda import load_cuda_runtime
from tts_otel.testing import capture
telemetry = tts_otel.configure(exporters=[], set_global=False, nvml=False)  # probes torch
with capture(cuda=load_cuda_runtime()) as cap:  # asks again
    with tts_otel.synthesis(model="m", text="hi") as req, req.stage("vocoder"):
        req.audio(seconds=1.0)
print("spans", len(cap.spans()))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "spans 2"
    lines = [line for line in done.stderr.splitlines() if "torch" in line]
    assert lines == [
        "tts_otel.gpu.cuda: tts-otel: torch is not installed; "
        "GPU memory and CUDA-event timing are off"
    ]
