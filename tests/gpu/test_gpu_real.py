"""The real GPU adapters, `TorchCuda` and `PynvmlReader`, on real hardware.

CI has no GPU and neither do the developers' machines: these run where a GPU is lent
(`pytest -m gpu`), and skip elsewhere with the reason. Each figure tts-otel reports is
checked against an independent reading of the same thing: torch's own peak-memory counter,
the device's own CUDA events, `nvidia-smi`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

import tts_otel
from tts_otel import semconv
from tts_otel.gpu.cuda import TorchCuda
from tts_otel.gpu.nvml import PynvmlReader
from tts_otel.testing import attributes, capture

pytestmark = [pytest.mark.gpu, pytest.mark.torch]

MIB = 1 << 20


@pytest.fixture
def cuda() -> TorchCuda:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: run where a GPU is lent (pytest -m gpu)")
    return TorchCuda(torch)


def test_a_requests_peak_memory_is_torchs_own_peak_over_it(cuda: TorchCuda) -> None:
    import torch

    resident = torch.empty(64 * MIB, dtype=torch.uint8, device="cuda")  # weights
    with capture(cuda=cuda, gpu_memory=True) as cap:
        with tts_otel.synthesis(model="m") as request:
            with request.stage("acoustic"):
                scratch = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda")
                del scratch
            with request.stage("vocoder"):
                scratch = torch.empty(128 * MIB, dtype=torch.uint8, device="cuda")
                del scratch
        # Independently: what torch says the same work peaks at, from a reset.
        torch.cuda.reset_peak_memory_stats()
        scratch = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda")
        del scratch
        expected = torch.cuda.max_memory_allocated()
    (span,) = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert attributes(span)[semconv.ATTR_GPU_MEMORY_PEAK] == expected
    assert expected >= resident.numel() + 256 * MIB


def test_cuda_event_stage_time_covers_the_kernels_it_launched(cuda: TorchCuda) -> None:
    import torch

    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    with capture(cuda=cuda, timing="cuda_events") as cap:
        with tts_otel.synthesis(model="m") as request:
            with request.stage("acoustic"):
                for _ in range(20):
                    a = a @ a / 4096
    (stage,) = cap.spans_named("tts.acoustic")
    gpu_seconds = float(attributes(stage)[semconv.ATTR_STAGE_GPU_DURATION])
    # The launches return at once; the events time the kernels on the device. How close
    # that is to the profiler's kernel time is benchmarks/gpu_truth.py's to measure.
    assert gpu_seconds > 0
    histogram = cap.histogram(semconv.METRIC_STAGE_GPU_DURATION, {semconv.ATTR_STAGE: "acoustic"})
    assert histogram.count == 1
    assert histogram.sum == gpu_seconds


def test_nvml_readings_equal_nvidia_smi() -> None:
    pytest.importorskip("pynvml")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("no nvidia-smi: run where a GPU is lent (pytest -m gpu)")
    try:
        reader = PynvmlReader()
    except Exception as error:  # no driver
        pytest.skip(f"NVML does not start here: {error}")
    query = (
        subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        .stdout.strip()
        .splitlines()
    )
    assert reader.device_count() == len(query)
    for index, line in enumerate(query):
        name, total_mib = (part.strip() for part in line.split(","))
        assert reader.device_name(index) == name
        used, total = reader.memory_bytes(index)
        assert total // MIB == int(total_mib)
        assert 0 <= used <= total
        assert 0 <= reader.utilization_percent(index) <= 100
        assert reader.power_milliwatts(index) > 0
        assert 0 < reader.temperature_celsius(index) < 120
        assert reader.throttle_reasons(index) >= 0
