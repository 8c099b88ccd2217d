"""CUDA measurements of one request: peak memory and GPU time per stage.

CUDA kernels run asynchronously: a stage's CPU wall time ends when its last
kernel is *queued*, and the GPU work is paid for by whichever later stage
synchronises (often the vocoder's copy to the CPU). With
``timing="cuda_events"`` each stage records a CUDA event when it starts and
one when it ends; the events are resolved once, when the request ends, so no
synchronisation is added inside the stages.

torch belongs to the service, so it is imported here lazily and only when a
GPU measurement is asked for; :class:`CudaRuntime` is the seam tests fake.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class CudaRuntime(Protocol):
    """The few CUDA calls tts-otel makes (for the current device)."""

    def reset_peak_memory(self) -> None: ...

    def max_memory_allocated(self) -> int: ...

    def record_event(self) -> object:
        """Record a timing event on the current stream and return it."""
        ...

    def elapsed_seconds(self, start: object, end: object) -> float:
        """Seconds between two recorded events; waits for ``end`` to complete."""
        ...


class TorchCuda:
    """:class:`CudaRuntime` on ``torch.cuda``."""

    def __init__(self, torch_module: Any) -> None:
        self._cuda = torch_module.cuda

    def reset_peak_memory(self) -> None:
        self._cuda.reset_peak_memory_stats()

    def max_memory_allocated(self) -> int:
        return int(self._cuda.max_memory_allocated())

    def record_event(self) -> object:
        event = self._cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_seconds(self, start: object, end: object) -> float:
        end.synchronize()  # type: ignore[attr-defined]
        # torch reports milliseconds.
        return float(start.elapsed_time(end)) / 1000.0  # type: ignore[attr-defined]


@functools.cache
def load_cuda_runtime() -> CudaRuntime | None:
    """The torch CUDA runtime, or ``None`` (with one log line) when there is none.

    Probed once per process: every handle asks, the answer does not change.
    """
    try:
        import torch
    except ImportError:
        _log.info("tts-otel: torch is not installed; GPU memory and CUDA-event timing are off")
        return None
    if not torch.cuda.is_available():
        _log.info("tts-otel: no CUDA device; GPU memory and CUDA-event timing are off")
        return None
    return TorchCuda(torch)


# Plain classes: a dataclass costs about 1 ms of `import tts_otel` (Python 3.11 compiles
# each generated method; measured on the 2-core reference machine).
class GpuInterval:
    """One open or closed stage (or the whole request) as the GPU saw it."""

    __slots__ = ("end_event", "peak_bytes", "start_event")

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.start_event: object | None = None
        self.end_event: object | None = None


class RequestGpu:
    """Folds CUDA's single peak counter into per-interval peaks.

    CUDA keeps one "max allocated since reset" per device. At every stage
    boundary the max so far is folded into each open interval, then reset, so
    nested stages (acoustic > llm) and the request all get their own peak.
    Concurrent requests on one device share the counter, so their peaks are
    neither upper nor lower bounds: another request's allocations raise them,
    and another request's reset can hide a peak that happened before it.
    Per-request peaks are exact only when one request at a time uses the device.
    """

    def __init__(self, runtime: CudaRuntime, events: bool) -> None:
        self.runtime = runtime
        self.events = events
        self.request = GpuInterval()
        self._open = [self.request]
        self._lock = threading.Lock()
        runtime.reset_peak_memory()

    def _fold(self) -> None:
        peak = self.runtime.max_memory_allocated()
        for interval in self._open:
            if peak > interval.peak_bytes:
                interval.peak_bytes = peak
        self.runtime.reset_peak_memory()

    def begin(self) -> GpuInterval:
        interval = GpuInterval()
        with self._lock:
            self._fold()
            self._open.append(interval)
        if self.events:
            interval.start_event = self.runtime.record_event()
        return interval

    def end(self, interval: GpuInterval) -> None:
        if self.events:
            interval.end_event = self.runtime.record_event()
        with self._lock:
            self._fold()
            self._open.remove(interval)

    def finish(self) -> int:
        """The request's peak bytes; closes the request interval."""
        with self._lock:
            self._fold()
            self._open.clear()
        return self.request.peak_bytes

    def gpu_seconds(self, interval: GpuInterval) -> float | None:
        if interval.start_event is None or interval.end_event is None:
            return None
        return self.runtime.elapsed_seconds(interval.start_event, interval.end_event)
