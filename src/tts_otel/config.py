"""Settings: explicit argument, else environment variable, else default.

Each setting is declared once, as a field of :class:`Settings` (its variable,
parser, default and the fix its error gives); that table drives the lookup,
the validation, configure()'s keywords and the README's table. Everything is
validated here, once, at start: a bad value raises
:class:`~tts_otel.errors.ConfigurationError` naming the setting and the fix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from tts_otel._settings import (
    choice,
    directory,
    file_mode,
    flag,
    host,
    names,
    path,
    port,
    positive_int,
    resolve,
    setting,
    text,
)
from tts_otel.errors import ConfigurationError

Timing = Literal["wall", "cuda_events"]
TextRecording = Literal["off", "plain", "sha256"]

DEFAULT_SERVICE_NAME: Final = "tts"
DEFAULT_OUTPUT_DIR: Final = "tts-otel-out"
DEFAULT_OUTPUT_MODE: Final = 0o600
DEFAULT_MAX_ATTRIBUTE_VALUES: Final = 100
DEFAULT_METRIC_BUFFER: Final = 4096
DEFAULT_PROMETHEUS_HOST: Final = "127.0.0.1"
DEFAULT_PROMETHEUS_PORT: Final = 9464
DEFAULT_SPOOL_BYTES: Final = 64 * 1024 * 1024  # the OTLP and InfluxDB spools' bound


def _flag(name: str, raw: object) -> bool:
    """The shared flag parser, raising ConfigurationError for ``name``: for variables
    read outside this table (the GLM-TTS instrumentor's ``TTS_OTEL_KV_CACHE``)."""
    try:
        return flag(raw)
    except ValueError as error:
        raise ConfigurationError(name, str(error), "use true or false") from None


def _record_text(raw: object) -> TextRecording:
    if isinstance(raw, str) and raw.strip().lower() in ("hash", "sha256"):
        return "sha256"
    try:
        return "plain" if flag(raw) else "off"
    except ValueError:
        raise ValueError(f"{raw!r} is not a text recording mode") from None


def exporter_names(raw: object) -> tuple[str, ...]:
    """``"console, file"`` -> ``("console", "file")``; ``"none"`` means no exporter."""
    return tuple(name.lower() for name in names(raw) if name.lower() != "none")


@dataclass(frozen=True)
class Settings:
    """tts-otel's settings, one row each. ``setting()`` returns a ``dataclasses.field``,
    not a shared default object, which ruff's RUF009 cannot see."""

    service_name: str = setting(DEFAULT_SERVICE_NAME, "OTEL_SERVICE_NAME", text)
    exporters: tuple[str, ...] = setting(
        # The OTel variable is honoured so `OTEL_TRACES_EXPORTER=console` works as users expect.
        (), ("TTS_OTEL_EXPORTERS", "OTEL_TRACES_EXPORTER"), exporter_names,
        "name exporters, comma-separated", shown="none",
    )  # fmt: skip
    timing: Timing = setting(  # noqa: RUF009
        "wall", "TTS_OTEL_TIMING", choice(*get_args(Timing)), "use 'wall' or 'cuda_events'",
        doc="`wall`, `cuda_events`",
    )  # fmt: skip
    record_text: TextRecording = setting(  # noqa: RUF009
        "off", "TTS_OTEL_RECORD_TEXT", _record_text, "use false, true or hash",
        doc="`false`, `true`, `hash`", shown="`false`",
    )  # fmt: skip
    gpu_memory: bool = setting(
        True, "TTS_OTEL_GPU_MEMORY", flag, "use true or false",
        shown="`true` (when torch has CUDA)",
    )  # fmt: skip
    nvml: bool = setting(
        True, "TTS_OTEL_NVML", flag, "use true or false", shown="`true` (when a driver answers)"
    )
    output_dir: Path = setting(  # noqa: RUF009
        Path(DEFAULT_OUTPUT_DIR), "TTS_OTEL_OUTPUT_DIR", path, doc="`file` exporter"
    )
    # Spans can hold the input text (record_text): owner-only unless asked otherwise.
    output_mode: int = setting(
        DEFAULT_OUTPUT_MODE, "TTS_OTEL_OUTPUT_MODE", file_mode, "use an octal mode: 600, 640",
        doc="octal, the `file` exporter's new files; new folders add `x` where `r` is",
        shown="`600` (folders `700`)",
    )  # fmt: skip
    max_attribute_values: int = setting(
        DEFAULT_MAX_ATTRIBUTE_VALUES, "TTS_OTEL_MAX_ATTRIBUTE_VALUES", positive_int, "use e.g. 100"
    )
    metric_buffer_size: int = setting(
        DEFAULT_METRIC_BUFFER, "TTS_OTEL_METRIC_BUFFER", positive_int, "use e.g. 4096",
        doc="request batches",
    )  # fmt: skip
    # Both set by configure(prometheus=True | port | "host:port").
    # Set, it names the exporters of metrics apart from traces, as the OTel spec has it
    # (exporters given to configure() in code send both signals and win over it).
    metric_exporters: tuple[str, ...] | None = setting(
        None, "OTEL_METRICS_EXPORTER", exporter_names, "name exporters, comma-separated",
        argument=False, shown="the exporters above",
    )  # fmt: skip
    prometheus_host: str = setting(
        DEFAULT_PROMETHEUS_HOST, ("TTS_OTEL_PROMETHEUS_HOST", "OTEL_EXPORTER_PROMETHEUS_HOST"),
        host,
        "use e.g. 127.0.0.1 or 0.0.0.0", doc='the host of `"host:port"`', argument="prometheus",
        shown=f"`{DEFAULT_PROMETHEUS_HOST}` (when the `prometheus` exporter is on)",
    )  # fmt: skip
    prometheus_port: int = setting(
        DEFAULT_PROMETHEUS_PORT, ("TTS_OTEL_PROMETHEUS_PORT", "OTEL_EXPORTER_PROMETHEUS_PORT"),
        port, "use 0 to 65535 (0: any free)",
        doc="a port, or the port of `\"host:port\"`", argument="prometheus",
    )  # fmt: skip
    # The `otlp` exporter's spool, where batches wait while the collector is away.
    otlp_spool_dir: Path | None = setting(  # noqa: RUF009
        None, "TTS_OTEL_OTLP_SPOOL_DIR", directory, "name a directory (it is created if missing)",
        doc="`otlp` exporter: disk spool, which survives a restart", argument=False,
        shown="none: in memory",
    )  # fmt: skip
    otlp_spool_bytes: int = setting(
        DEFAULT_SPOOL_BYTES, "TTS_OTEL_OTLP_SPOOL_BYTES", positive_int,
        "use e.g. 67108864 (64 MiB)", doc="`otlp` exporter: the spool's bound in bytes",
        argument=False, shown="`67108864` (64 MiB)",
    )  # fmt: skip


def load_settings(
    *, environ: Mapping[str, str] | None = None, lenient: bool = False, **arguments: Any
) -> Settings:
    """Resolve every setting of :class:`Settings` (by field name) from its argument,
    its variable or its default; ``None`` or ``""`` means not given.

    A bad value raises ConfigurationError; with ``lenient=True`` a bad variable
    is logged once and its default used instead (arguments are always strict).
    """
    env = os.environ if environ is None else environ
    return Settings(**resolve(Settings, arguments, env, lenient))


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
