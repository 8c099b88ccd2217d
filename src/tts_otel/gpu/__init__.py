"""GPU telemetry in one place: ``cuda`` (per-request peak memory and CUDA-event stage
timing, through the service's own torch) and ``nvml`` (device gauges: memory,
utilisation, power, temperature, throttling). Both degrade to one log line where
there is no GPU, torch or driver.

``configure(cuda=..., nvml_reader=...)`` takes the two seams below (fakes in tests).
"""

from tts_otel.gpu.cuda import CudaRuntime
from tts_otel.gpu.nvml import NvmlReader

__all__ = ["CudaRuntime", "NvmlReader"]
