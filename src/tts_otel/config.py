"""Settings: explicit argument, else environment variable, else default.

Everything is validated here, once, at start: a bad value raises
:class:`~tts_otel.errors.ConfigurationError` naming the setting and the fix.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar

from tts_otel.errors import ConfigurationError

_log = logging.getLogger(__name__)

T = TypeVar("T")
Timing = Literal["wall", "cuda_events"]
TextRecording = Literal["off", "plain", "sha256"]

TIMINGS: Final = ("wall", "cuda_events")
DEFAULT_SERVICE_NAME: Final = "tts"
DEFAULT_OUTPUT_DIR: Final = "tts-otel-out"
DEFAULT_MAX_ATTRIBUTE_VALUES: Final = 100
DEFAULT_METRIC_BUFFER: Final = 4096
DEFAULT_PROMETHEUS_HOST: Final = "127.0.0.1"
DEFAULT_PROMETHEUS_PORT: Final = 9464

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Settings:
    service_name: str = DEFAULT_SERVICE_NAME
    exporters: tuple[str, ...] = ()
    timing: Timing = "wall"
    record_text: TextRecording = "off"
    gpu_memory: bool = True
    nvml: bool = True
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    max_attribute_values: int = DEFAULT_MAX_ATTRIBUTE_VALUES
    metric_buffer_size: int = DEFAULT_METRIC_BUFFER
    prometheus_host: str = DEFAULT_PROMETHEUS_HOST
    prometheus_port: int = DEFAULT_PROMETHEUS_PORT


def _flag(name: str, raw: object) -> bool:
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(name, f"{raw!r} is not a boolean", "use true or false")


def _positive_int(name: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(name, f"{raw!r} is not a positive integer", "use e.g. 100")
    return value


def _port(name: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ConfigurationError(name, f"{raw!r} is not a TCP port", "use 0 to 65535 (0: any free)")
    return value


def _host(name: str, raw: object) -> str:
    host = str(raw).strip()
    if not host:
        raise ConfigurationError(name, "the address is empty", "use e.g. 127.0.0.1 or 0.0.0.0")
    return host


def _timing(name: str, raw: object) -> Timing:
    if raw == "wall":
        return "wall"
    if raw == "cuda_events":
        return "cuda_events"
    raise ConfigurationError(name, f"{raw!r} is not a timing mode", "use 'wall' or 'cuda_events'")


def _record_text(name: str, raw: object) -> TextRecording:
    if raw is True:
        return "plain"
    if raw is False or raw is None:
        return "off"
    text = str(raw).strip().lower()
    if text in ("hash", "sha256"):
        return "sha256"
    if text in _TRUE:
        return "plain"
    if text in _FALSE:
        return "off"
    raise ConfigurationError(
        name, f"{raw!r} is not a text recording mode", "use false, true or hash"
    )


def exporter_names(raw: str) -> tuple[str, ...]:
    """``"console, file"`` -> ``("console", "file")``; ``"none"`` means no exporter."""
    names = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    return tuple(name for name in names if name != "none")


# Argument name -> (variable, default as the variable would spell it).
_VARIABLES: Final = {
    "timing": ("TTS_OTEL_TIMING", "wall"),
    "record_text": ("TTS_OTEL_RECORD_TEXT", "false"),
    "gpu_memory": ("TTS_OTEL_GPU_MEMORY", "true"),
    "nvml": ("TTS_OTEL_NVML", "true"),
    "max_attribute_values": ("TTS_OTEL_MAX_ATTRIBUTE_VALUES", str(DEFAULT_MAX_ATTRIBUTE_VALUES)),
    "metric_buffer_size": ("TTS_OTEL_METRIC_BUFFER", str(DEFAULT_METRIC_BUFFER)),
    "prometheus host": ("TTS_OTEL_PROMETHEUS_HOST", DEFAULT_PROMETHEUS_HOST),
    "prometheus port": ("TTS_OTEL_PROMETHEUS_PORT", str(DEFAULT_PROMETHEUS_PORT)),
}

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(error: ConfigurationError, raw: str, default: str) -> None:
    """One WARNING per bad variable and value: the service may build handles repeatedly."""
    with _warned_lock:
        if (error.setting, raw) in _warned:
            return
        _warned.add((error.setting, raw))
    _log.warning("tts-otel: %s. Using the default %r until it is fixed.", error, default)


def _resolve(
    parse: Callable[[str, object], T],
    argument: object,
    argument_name: str,
    variable: str,
    default: str,
    env: Mapping[str, str],
    lenient: bool,
) -> T:
    """Argument, else variable, else default. ``lenient``: a bad variable falls back to
    the default with one warning, because without configure() the first place settings
    are read is a request, and a request must never fail for telemetry."""
    if argument is not None:
        return parse(argument_name, argument)
    raw = env.get(variable, default)
    try:
        return parse(variable, raw)
    except ConfigurationError as error:
        if not lenient:
            raise
        _warn_once(error, raw, default)
        return parse(variable, default)


def load_settings(
    *,
    service_name: str | None = None,
    exporters: tuple[str, ...] | None = None,
    timing: str | None = None,
    record_text: bool | str | None = None,
    gpu_memory: bool | None = None,
    nvml: bool | None = None,
    output_dir: str | Path | None = None,
    max_attribute_values: int | None = None,
    metric_buffer_size: int | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    environ: Mapping[str, str] | None = None,
    lenient: bool = False,
) -> Settings:
    """Resolve every setting from its argument, its variable or its default.

    A bad value raises ConfigurationError; with ``lenient=True`` a bad variable
    is logged once and its default used instead (arguments are always strict).
    """
    env = os.environ if environ is None else environ

    if exporters is None:
        # The OTel variable is honoured so `OTEL_TRACES_EXPORTER=console` works as users expect.
        raw = env.get("TTS_OTEL_EXPORTERS", env.get("OTEL_TRACES_EXPORTER", ""))
        exporters = exporter_names(raw)

    def setting(parse: Callable[[str, object], T], argument: object, name: str) -> T:
        variable, default = _VARIABLES[name]
        return _resolve(parse, argument, name, variable, default, env, lenient)

    name = service_name or env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    directory = Path(output_dir or env.get("TTS_OTEL_OUTPUT_DIR", DEFAULT_OUTPUT_DIR))
    return Settings(
        service_name=name,
        exporters=exporters,
        timing=setting(_timing, timing, "timing"),
        record_text=setting(_record_text, record_text, "record_text"),
        gpu_memory=setting(_flag, gpu_memory, "gpu_memory"),
        nvml=setting(_flag, nvml, "nvml"),
        output_dir=directory,
        max_attribute_values=setting(_positive_int, max_attribute_values, "max_attribute_values"),
        metric_buffer_size=setting(_positive_int, metric_buffer_size, "metric_buffer_size"),
        prometheus_host=setting(_host, prometheus_host, "prometheus host"),
        prometheus_port=setting(_port, prometheus_port, "prometheus port"),
    )


# The SDK reads these itself. A bad value there raises a bare ValueError from deep
# inside a constructor (or is ignored with a log line), so check them first and
# name the variable. Units as the Python SDK reads them.
_SDK_INTEGERS: Final = {
    "OTEL_BSP_MAX_QUEUE_SIZE": "spans, e.g. 2048",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "spans, e.g. 512 (at most the queue size)",
    "OTEL_BSP_SCHEDULE_DELAY": "milliseconds, e.g. 5000",
    "OTEL_BSP_EXPORT_TIMEOUT": "milliseconds, e.g. 30000",
}
_SDK_NUMBERS: Final = {
    "OTEL_METRIC_EXPORT_INTERVAL": "milliseconds, e.g. 60000",
    "OTEL_METRIC_EXPORT_TIMEOUT": "milliseconds, e.g. 30000",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "seconds, e.g. 10",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "seconds, e.g. 10",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "seconds, e.g. 10",
}
_SDK_QUEUE_DEFAULT: Final = 2048
_SDK_BATCH_DEFAULT: Final = 512


def _positive(variable: str, raw: str, convert: Callable[[str], float], unit: str) -> float:
    try:
        value = convert(raw.strip())
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(variable, f"{raw!r} is not a positive number", f"use {unit}")
    return value


def check_sdk_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigurationError for an ``OTEL_*`` variable the SDK would choke on."""
    env = os.environ if environ is None else environ
    for variable, unit in _SDK_INTEGERS.items():
        if variable in env:
            _positive(variable, env[variable], int, unit)
    for variable, unit in _SDK_NUMBERS.items():
        if variable in env:
            _positive(variable, env[variable], float, unit)
    queue = int(env.get("OTEL_BSP_MAX_QUEUE_SIZE", _SDK_QUEUE_DEFAULT))
    batch = int(env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", _SDK_BATCH_DEFAULT))
    if batch > queue:  # the SDK's default batch (512) counts: a queue of 100 alone is refused
        raise ConfigurationError(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", f"{batch} is larger than the queue ({queue})",
            "make it at most OTEL_BSP_MAX_QUEUE_SIZE",
        )  # fmt: skip
