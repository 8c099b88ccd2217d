"""Fakes for what cannot run here: CUDA and NVML (no GPU on this machine or in CI); and a
Telemetry scraped in process, to check the names alerts read against the Prometheus exporter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tts_otel.config import load_settings
from tts_otel.telemetry import Telemetry

Samples = dict[str, list[tuple[dict[str, str], float]]]


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
    # NVML's clock event (throttle) reasons bitmask; None: NVML does not support it here.
    throttle_reasons: int | None = None


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

    def throttle_reasons(self, index: int) -> int:
        reasons = self._device(index).throttle_reasons
        if reasons is None:
            raise RuntimeError("Not Supported")  # as pynvml's NVMLError_NotSupported reads
        return reasons


def prometheus_telemetry(**telemetry: Any) -> tuple[Telemetry, Callable[[], Samples]]:
    """A Telemetry (keywords: ``health``, ``nvml_reader``...) whose metrics go through
    OpenTelemetry's Prometheus exporter, and a scrape: sample name -> (labels, value),
    without the otel_scope_* labels every sample carries."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    settings = load_settings(exporters=(), nvml="nvml_reader" in telemetry)
    handle = Telemetry(
        settings, TracerProvider(), provider, owns_providers=True, cuda=None, **telemetry
    )

    def scrape() -> Samples:
        found: Samples = {}
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope")}
                found.setdefault(sample.name, []).append((labels, sample.value))
        return found

    return handle, scrape
