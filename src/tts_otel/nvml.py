"""NVML GPU gauges: memory used and total, utilisation, power, temperature.

Values are read when a metric reader collects, so there is no sampling
thread to spin and the sampling interval is the export interval.
:class:`NvmlReader` is the seam tests fake.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from tts_otel import semconv

_log = logging.getLogger(__name__)


class NvmlReader(Protocol):
    def device_count(self) -> int: ...

    def device_name(self, index: int) -> str: ...

    def memory_bytes(self, index: int) -> tuple[int, int]:
        """(used, total) bytes."""
        ...

    def utilization_percent(self, index: int) -> float: ...

    def power_milliwatts(self, index: int) -> float: ...

    def temperature_celsius(self, index: int) -> float: ...


class PynvmlReader:
    """:class:`NvmlReader` on NVIDIA's ``pynvml`` (nvidia-ml-py)."""

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml: Any = pynvml

    def _handle(self, index: int) -> Any:
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def device_count(self) -> int:
        return int(self._nvml.nvmlDeviceGetCount())

    def device_name(self, index: int) -> str:
        name = self._nvml.nvmlDeviceGetName(self._handle(index))
        return name.decode() if isinstance(name, bytes) else str(name)

    def memory_bytes(self, index: int) -> tuple[int, int]:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle(index))
        return int(info.used), int(info.total)

    def utilization_percent(self, index: int) -> float:
        return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle(index)).gpu)

    def power_milliwatts(self, index: int) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle(index)))

    def temperature_celsius(self, index: int) -> float:
        sensor = self._nvml.NVML_TEMPERATURE_GPU
        return float(self._nvml.nvmlDeviceGetTemperature(self._handle(index), sensor))


class NvmlSampler:
    """Registers the ``hw.gpu.*`` observable gauges, one series per device.

    A reader error at collection time logs once and turns the sampler off:
    a driver that went away must not fill the log every export interval.
    """

    def __init__(self, meter: Meter, reader: NvmlReader) -> None:
        self._reader = reader
        self.enabled = True
        self._devices = [
            {semconv.ATTR_HW_ID: str(index), semconv.ATTR_HW_NAME: reader.device_name(index)}
            for index in range(reader.device_count())
        ]

        def memory_used(index: int) -> float:
            return float(reader.memory_bytes(index)[0])

        def memory_total(index: int) -> float:
            return float(reader.memory_bytes(index)[1])

        def utilization(index: int) -> float:
            return reader.utilization_percent(index) / 100.0

        def power(index: int) -> float:
            return reader.power_milliwatts(index) / 1000.0

        gauges: tuple[tuple[str, str, str, Callable[[int], float]], ...] = (
            (semconv.METRIC_HW_GPU_MEMORY_USAGE, semconv.UNIT_BYTES,
             "GPU memory in use.", memory_used),
            (semconv.METRIC_HW_GPU_MEMORY_LIMIT, semconv.UNIT_BYTES,
             "GPU memory in total.", memory_total),
            (semconv.METRIC_HW_GPU_UTILIZATION, semconv.UNIT_RATIO,
             "Share of time a kernel ran (0 to 1).", utilization),
            (semconv.METRIC_HW_GPU_POWER, semconv.UNIT_WATTS,
             "Power drawn by the GPU.", power),
            (semconv.METRIC_HW_GPU_TEMPERATURE, semconv.UNIT_CELSIUS,
             "GPU core temperature.", reader.temperature_celsius),
        )  # fmt: skip
        for name, unit, description, read in gauges:
            meter.create_observable_gauge(
                name, callbacks=[self._callback(read)], unit=unit, description=description
            )

    def _callback(
        self, read: Callable[[int], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if not self.enabled:
                return []
            try:
                return [
                    Observation(read(index), attributes)
                    for index, attributes in enumerate(self._devices)
                ]
            except Exception as error:
                self.enabled = False
                _log.warning("tts-otel: NVML read failed (%s); GPU gauges are off", error)
                return []

        return observe


@functools.cache
def default_reader() -> PynvmlReader | None:
    """NVML through pynvml, probed once per process; ``None`` (one log line) without a driver."""
    try:
        return PynvmlReader()
    except Exception as error:  # no driver, no library, no device: all the same here
        _log.info("tts-otel: NVML unavailable (%s); GPU gauges are off", error)
        return None


def start_nvml_sampler(meter: Meter, reader: NvmlReader | None = None) -> NvmlSampler | None:
    """Start the gauges on ``reader`` (default: pynvml), or return ``None`` when there is none."""
    reader = reader if reader is not None else default_reader()
    if reader is None:
        return None
    try:
        return NvmlSampler(meter, reader)
    except Exception as error:  # a device that fails its first read
        _log.warning("tts-otel: NVML read failed (%s); GPU gauges are off", error)
        return None
