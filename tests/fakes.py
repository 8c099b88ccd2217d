"""Fakes for what cannot run here: CUDA and NVML (no GPU on this machine or in CI)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeEvent:
    at: float  # the fake GPU clock when the event completes


@dataclass
class FakeCuda:
    """A scripted device: memory allocated and a GPU clock the test moves by hand.

    ``allocated`` is the memory in use now; CUDA's "max allocated since the
    last reset" is tracked the way the driver does it.
    """

    allocated: int = 0
    gpu_clock: float = 0.0
    max_since_reset: int = 0
    synchronized: int = 0
    log: list[str] = field(default_factory=list)

    def allocate(self, size: int) -> None:
        self.allocated += size
        self.max_since_reset = max(self.max_since_reset, self.allocated)

    def free(self, size: int) -> None:
        self.allocated -= size

    def reset_peak_memory(self) -> None:
        self.max_since_reset = self.allocated

    def max_memory_allocated(self) -> int:
        return self.max_since_reset

    def record_event(self) -> object:
        self.log.append("record")
        return FakeEvent(self.gpu_clock)

    def elapsed_seconds(self, start: object, end: object) -> float:
        self.synchronized += 1
        self.log.append("synchronize")
        assert isinstance(start, FakeEvent)
        assert isinstance(end, FakeEvent)
        return end.at - start.at


@dataclass
class FakeDevice:
    name: str
    used: int
    total: int
    utilization: float  # percent
    power_mw: float
    temperature: float


@dataclass
class FakeNvml:
    devices: list[FakeDevice]
    fail: bool = False

    def _device(self, index: int) -> FakeDevice:
        if self.fail:
            raise RuntimeError("NVML: GPU is lost")
        return self.devices[index]

    def device_count(self) -> int:
        return len(self.devices)

    def device_name(self, index: int) -> str:
        return self._device(index).name

    def memory_bytes(self, index: int) -> tuple[int, int]:
        device = self._device(index)
        return device.used, device.total

    def utilization_percent(self, index: int) -> float:
        return self._device(index).utilization

    def power_milliwatts(self, index: int) -> float:
        return self._device(index).power_mw

    def temperature_celsius(self, index: int) -> float:
        return self._device(index).temperature
