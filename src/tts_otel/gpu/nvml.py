"""NVML GPU gauges: memory used and total, utilisation, power, temperature, throttling.

Values are read when a metric reader collects, so there is no sampling
thread to spin and the sampling interval is the export interval.
:class:`NvmlReader` is the seam tests fake.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from tts_otel import semconv

_log = logging.getLogger(__name__)

# NVML's clock event ("throttle") reason bits that slow a GPU down, and their
# tts.gpu.throttle.reason values. The bits are NVML's ABI, the same in the old
# nvmlClocksThrottleReason* and new nvmlClocksEventReason* names. Left out on
# purpose: idle (0x1), application clocks (0x2), sync boost (0x10) and display
# clock (0x100) settings: the GPU runs as configured, nothing holds it back.
THROTTLE_REASONS: Final = {
    0x40: "thermal",  # HW thermal slowdown: the GPU or memory is too hot
    0x20: "sw_thermal",  # the driver lowers clocks to stay below its temperature target
    0x08: "hw_slowdown",  # thermal or power brake, asserted by the hardware
    0x04: "power",  # SW power cap: drawing its power limit
    0x80: "power_brake",  # an external power brake (the system's power supply)
    0x200: "board_limit",
    0x400: "reliability",  # held down to protect the board's lifetime
}

Attributes = dict[str, str]


class NvmlReader(Protocol):
    def device_count(self) -> int: ...

    def device_name(self, index: int) -> str: ...

    def memory_bytes(self, index: int) -> tuple[int, int]:
        """(used, total) bytes."""
        ...

    def utilization_percent(self, index: int) -> float: ...

    def power_milliwatts(self, index: int) -> float: ...

    def temperature_celsius(self, index: int) -> float: ...

    def throttle_reasons(self, index: int) -> int:
        """NVML's bitmask of current clock event reasons; raises where NVML has none."""
        ...


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

    def throttle_reasons(self, index: int) -> int:
        # nvidia-ml-py 12.535 renamed "throttle" to "clocks event" (the old name goes in
        # CUDA 14); whichever this one has, over the same NVML bits.
        read = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if read is None:
            read = self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(read(self._handle(index)))


class NvmlSampler:
    """Registers the ``hw.gpu.*``, ``hw.power``, ``hw.temperature`` and ``tts.gpu.throttled``
    observable gauges, one series per device.

    A reader error at collection time logs once and turns the sampler off:
    a driver that went away must not fill the log every export interval.
    """

    def __init__(self, meter: Meter, reader: NvmlReader) -> None:
        self._reader = reader
        self.enabled = True
        self._devices = [
            {
                semconv.ATTR_HW_ID: str(index),
                semconv.ATTR_HW_NAME: reader.device_name(index),
                semconv.ATTR_HW_TYPE: semconv.HW_TYPE_GPU,
            }
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
            (
                semconv.METRIC_HW_GPU_MEMORY_USAGE,
                semconv.UNIT_BYTES,
                "GPU memory in use.",
                memory_used,
            ),
            (
                semconv.METRIC_HW_GPU_MEMORY_LIMIT,
                semconv.UNIT_BYTES,
                "GPU memory in total.",
                memory_total,
            ),
            (
                semconv.METRIC_HW_GPU_UTILIZATION,
                semconv.UNIT_RATIO,
                "Share of time a kernel ran (0 to 1).",
                utilization,
            ),
            (semconv.METRIC_HW_POWER, semconv.UNIT_WATTS, "Power drawn by the GPU.", power),
            (
                semconv.METRIC_HW_TEMPERATURE,
                semconv.UNIT_CELSIUS,
                "GPU core temperature.",
                reader.temperature_celsius,
            ),
        )
        devices = list(enumerate(self._devices))
        for name, unit, description, read in gauges:
            meter.create_observable_gauge(
                name,
                callbacks=[self._callback(_one_value(read), devices)],
                unit=unit,
                description=description,
            )
        throttling = self._throttle_reporting(devices)
        if throttling:
            meter.create_observable_gauge(
                semconv.METRIC_GPU_THROTTLED,
                unit=semconv.UNIT_RATIO,
                callbacks=[self._callback(self._throttled, throttling)],
                description="1 while NVML reports the GPU's clocks held down for this reason.",
            )

    def _throttle_reporting(
        self, devices: Sequence[tuple[int, Attributes]]
    ) -> list[tuple[int, Attributes]]:
        """The devices whose throttle reasons NVML reports; one line names the others
        (older GPUs and drivers, vGPUs), whose series are left out rather than made up."""
        reporting, silent, cause = [], [], ""
        for index, attributes in devices:
            try:
                self._reader.throttle_reasons(index)
            except Exception as error:
                silent.append(str(index))
                cause = str(error)
            else:
                reporting.append((index, attributes))
        if silent:
            _log.info(
                "tts-otel: NVML reports no clock throttle reasons on GPU %s (%s); "
                "tts.gpu.throttled is off there",
                ", ".join(silent),
                cause,
            )
        return reporting

    def _throttled(self, index: int, attributes: Attributes) -> Iterable[Observation]:
        # Every reason, 0 or 1: a series present only while throttled has no "for" to wait.
        reasons = self._reader.throttle_reasons(index)
        return [
            Observation(
                int(bool(reasons & bit)),
                {**attributes, semconv.ATTR_GPU_THROTTLE_REASON: reason},
            )
            for bit, reason in THROTTLE_REASONS.items()
        ]

    def _callback(
        self,
        observe_device: Callable[[int, Attributes], Iterable[Observation]],
        devices: Sequence[tuple[int, Attributes]],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if not self.enabled:
                return []
            try:
                return [
                    observation
                    for index, attributes in devices
                    for observation in observe_device(index, attributes)
                ]
            except Exception as error:
                self.enabled = False
                _log.warning("tts-otel: NVML read failed (%s); GPU gauges are off", error)
                return []

        return observe


def _one_value(
    read: Callable[[int], float],
) -> Callable[[int, Attributes], Iterable[Observation]]:
    return lambda index, attributes: [Observation(read(index), attributes)]


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
