"""tts-otel's GPU figures against independent readings of the same run, on a real GPU.

1. Stage GPU time from CUDA events (``timing="cuda_events"``) against the torch
   profiler's kernel time for the same stage (``record_function`` around it).
2. Per-request peak GPU memory against ``torch.cuda.max_memory_allocated`` read from a
   reset around the same request.
3. NVML's memory gauge (``PynvmlReader``) against ``nvidia-smi`` at the same moment.

Without a CUDA device it says so and exits 0 (CI and the developers' machines have
none). Last lines: one ``key=value`` per figure.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
from typing import Any

import tts_otel
from tts_otel import semconv
from tts_otel.gpu.cuda import TorchCuda
from tts_otel.gpu.nvml import PynvmlReader
from tts_otel.testing import attributes, capture

STAGES = ("acoustic", "vocoder")


def _work(torch: Any, stage: str, size: int) -> None:
    if stage == "acoustic":
        a = torch.randn(size, size, device="cuda")
        for _ in range(8):
            a = a @ a / size
    else:
        x = torch.randn(1, 80, size * 4, device="cuda")
        conv = torch.nn.functional.conv1d
        for _ in range(8):
            x = conv(x, torch.randn(80, 80, 7, device="cuda"), padding=3)


def _profiled_kernel_seconds(profile: Any, stage: str) -> float:
    for event in profile.key_averages():
        if event.key == stage:
            device = getattr(event, "device_time_total", None)
            return float(device if device is not None else event.cuda_time_total) / 1e6
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_truth: torch is not installed; nothing measured\ngpu_available=false")
        return
    if not torch.cuda.is_available():
        print("gpu_truth: no CUDA device; nothing measured\ngpu_available=false")
        return
    cuda = TorchCuda(torch)
    event_ratios: dict[str, list[float]] = {stage: [] for stage in STAGES}
    memory_equal = 0
    from torch.profiler import ProfilerActivity, profile, record_function

    for index in range(args.requests):
        size = 1024 + 256 * (index % 4)
        with capture(cuda=cuda, timing="cuda_events", gpu_memory=True) as cap:
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                with tts_otel.synthesis(model="m") as request:
                    for stage in STAGES:
                        with request.stage(stage), record_function(stage):
                            _work(torch, stage, size)
                torch.cuda.synchronize()
            spans = {span.name: span for span in cap.spans()}
        for stage in STAGES:
            events = float(attributes(spans[f"tts.{stage}"])[semconv.ATTR_STAGE_GPU_DURATION])
            event_ratios[stage].append(events / _profiled_kernel_seconds(prof, stage))
        reported = attributes(spans[semconv.SPAN_SYNTHESIZE])[semconv.ATTR_GPU_MEMORY_PEAK]
        torch.cuda.reset_peak_memory_stats()
        for stage in STAGES:
            _work(torch, stage, size)
        torch.cuda.synchronize()
        memory_equal += int(reported == torch.cuda.max_memory_allocated())
    print(f"{args.requests} requests, stages {', '.join(STAGES)}")
    for stage in STAGES:
        ratio = statistics.median(event_ratios[stage])
        print(f"{stage}: CUDA-event time / profiler kernel time, median {ratio:.3f}")
    nvml_ratio = float("nan")
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        used, _ = PynvmlReader().memory_bytes(0)
        answer = subprocess.run(
            [smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        nvml_ratio = (used / (1 << 20)) / float(answer.strip())
    print("gpu_available=true")
    for stage in STAGES:
        print(f"event_kernel_ratio_{stage}={statistics.median(event_ratios[stage]):.3f}")
    print(f"peak_memory_equal={memory_equal}/{args.requests}")
    print(f"nvml_smi_memory_ratio={nvml_ratio:.3f}")


if __name__ == "__main__":
    main()
