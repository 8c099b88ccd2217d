"""Settings: explicit argument, else environment variable, else default.

Everything is validated here, once, at start: a bad value raises
:class:`~tts_otel.errors.ConfigurationError` naming the setting and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from tts_otel.errors import ConfigurationError

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


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
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


def _timing(name: str, raw: str) -> Timing:
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
) -> Settings:
    """Resolve every setting from its argument, its variable or its default."""
    env = os.environ if environ is None else environ

    if exporters is None:
        # The OTel variable is honoured so `OTEL_TRACES_EXPORTER=console` works as users expect.
        raw = env.get("TTS_OTEL_EXPORTERS", env.get("OTEL_TRACES_EXPORTER", ""))
        exporters = exporter_names(raw)

    if timing is not None:
        resolved_timing = _timing("timing", timing)
    else:
        resolved_timing = _timing("TTS_OTEL_TIMING", env.get("TTS_OTEL_TIMING", "wall"))

    if record_text is not None:
        text_mode = _record_text("record_text", record_text)
    else:
        text_mode = _record_text("TTS_OTEL_RECORD_TEXT", env.get("TTS_OTEL_RECORD_TEXT", "false"))

    if gpu_memory is None:
        gpu_memory = _flag("TTS_OTEL_GPU_MEMORY", env.get("TTS_OTEL_GPU_MEMORY", "true"))
    if nvml is None:
        nvml = _flag("TTS_OTEL_NVML", env.get("TTS_OTEL_NVML", "true"))

    if max_attribute_values is not None:
        cap = _positive_int("max_attribute_values", max_attribute_values)
    else:
        raw_cap = env.get("TTS_OTEL_MAX_ATTRIBUTE_VALUES", str(DEFAULT_MAX_ATTRIBUTE_VALUES))
        cap = _positive_int("TTS_OTEL_MAX_ATTRIBUTE_VALUES", raw_cap)

    if metric_buffer_size is not None:
        buffer = _positive_int("metric_buffer_size", metric_buffer_size)
    else:
        raw_buffer = env.get("TTS_OTEL_METRIC_BUFFER", str(DEFAULT_METRIC_BUFFER))
        buffer = _positive_int("TTS_OTEL_METRIC_BUFFER", raw_buffer)

    if prometheus_port is not None:
        port = _port("prometheus port", prometheus_port)
    else:
        raw_port = env.get("TTS_OTEL_PROMETHEUS_PORT", str(DEFAULT_PROMETHEUS_PORT))
        port = _port("TTS_OTEL_PROMETHEUS_PORT", raw_port)
    host = prometheus_host or env.get("TTS_OTEL_PROMETHEUS_HOST", DEFAULT_PROMETHEUS_HOST)

    name = service_name or env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    directory = Path(output_dir or env.get("TTS_OTEL_OUTPUT_DIR", DEFAULT_OUTPUT_DIR))
    return Settings(
        service_name=name,
        exporters=exporters,
        timing=resolved_timing,
        record_text=text_mode,
        gpu_memory=gpu_memory,
        nvml=nvml,
        output_dir=directory,
        max_attribute_values=cap,
        metric_buffer_size=buffer,
        prometheus_host=host,
        prometheus_port=port,
    )
