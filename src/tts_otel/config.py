"""Settings: explicit argument, else environment variable, else default.

Each setting is declared once, as a field of :class:`Settings` (its variable,
parser, default and the fix its error gives); that table drives the lookup,
the validation, configure()'s keywords and the README's table. Everything is
validated here, once, at start: a bad value raises
:class:`~tts_otel.errors.ConfigurationError` naming the setting and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from tts_otel._settings import (
    choice,
    directory,
    file_mode,
    host,
    names,
    non_negative_int,
    path,
    port,
    positive_int,
    positive_number,
    resolve,
    rows,
    setting,
    text,
)
from tts_otel._validation import TextRecording, flag, text_mode
from tts_otel.errors import ConfigurationError

Timing = Literal["wall", "cuda_events"]

DEFAULT_SERVICE_NAME: Final = "tts"
DEFAULT_OUTPUT_DIR: Final = "tts-otel-out"
DEFAULT_OUTPUT_MODE: Final = 0o600
DEFAULT_MAX_ATTRIBUTE_VALUES: Final = 100
DEFAULT_METRIC_BUFFER: Final = 4096
DEFAULT_PROMETHEUS_HOST: Final = "127.0.0.1"
DEFAULT_PROMETHEUS_PORT: Final = 9464
# The longest span attribute value by default, in characters: a 10 MB text recorded
# made a 30 MB span, and the collector refused its whole batch for it.
DEFAULT_ATTRIBUTE_LENGTH: Final = 8192
DEFAULT_SPOOL_BYTES: Final = 64 * 1024 * 1024  # the OTLP and InfluxDB spools' bound


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
        (),
        ("TTS_OTEL_EXPORTERS", "OTEL_TRACES_EXPORTER"),
        exporter_names,
        "name exporters, comma-separated",
        shown="none",
    )
    timing: Timing = setting(  # noqa: RUF009
        "wall",
        "TTS_OTEL_TIMING",
        choice(*get_args(Timing)),
        "use 'wall' or 'cuda_events'",
        doc="`wall`, `cuda_events`",
    )
    record_text: TextRecording = setting(  # noqa: RUF009
        "off",
        "TTS_OTEL_RECORD_TEXT",
        text_mode,
        "use false, true or hash",
        doc="`false`, `true`, `hash`",
        shown="`false`",
    )
    gpu_memory: bool = setting(
        True,
        "TTS_OTEL_GPU_MEMORY",
        flag,
        "use true or false",
        shown="`true` (when torch has CUDA)",
    )
    nvml: bool = setting(
        True, "TTS_OTEL_NVML", flag, "use true or false", shown="`true` (when a driver answers)"
    )
    output_dir: Path = setting(  # noqa: RUF009
        Path(DEFAULT_OUTPUT_DIR), "TTS_OTEL_OUTPUT_DIR", path, doc="`file` exporter"
    )
    # Spans can hold the input text (record_text): owner-only unless asked otherwise.
    output_mode: int = setting(
        DEFAULT_OUTPUT_MODE,
        "TTS_OTEL_OUTPUT_MODE",
        file_mode,
        "use an octal mode: 600, 640",
        doc="octal, the `file` exporter's new files; new folders add `x` where `r` is",
        shown="`600` (folders `700`)",
    )
    max_attribute_values: int = setting(
        DEFAULT_MAX_ATTRIBUTE_VALUES, "TTS_OTEL_MAX_ATTRIBUTE_VALUES", positive_int, "use e.g. 100"
    )
    metric_buffer_size: int = setting(
        DEFAULT_METRIC_BUFFER,
        "TTS_OTEL_METRIC_BUFFER",
        positive_int,
        "use e.g. 4096",
        doc="request batches",
    )
    # Both set by configure(prometheus=True | port | "host:port").
    # Set, it names the exporters of metrics apart from traces, as the OTel spec has it
    # (exporters given to configure() in code send both signals and win over it).
    metric_exporters: tuple[str, ...] | None = setting(
        None,
        "OTEL_METRICS_EXPORTER",
        exporter_names,
        "name exporters, comma-separated",
        argument=False,
        shown="the exporters above",
    )
    prometheus_host: str = setting(
        DEFAULT_PROMETHEUS_HOST,
        ("TTS_OTEL_PROMETHEUS_HOST", "OTEL_EXPORTER_PROMETHEUS_HOST"),
        host,
        "use e.g. 127.0.0.1 or 0.0.0.0",
        doc='the host of `"host:port"`',
        argument="prometheus",
        shown=f"`{DEFAULT_PROMETHEUS_HOST}` (when the `prometheus` exporter is on)",
    )
    prometheus_port: int = setting(
        DEFAULT_PROMETHEUS_PORT,
        ("TTS_OTEL_PROMETHEUS_PORT", "OTEL_EXPORTER_PROMETHEUS_PORT"),
        port,
        "use 0 to 65535 (0: any free)",
        doc='a port, or the port of `"host:port"`',
        argument="prometheus",
    )
    span_attribute_length: int = setting(
        DEFAULT_ATTRIBUTE_LENGTH,
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        non_negative_int,
        "use a number of characters, e.g. 8192",
        argument=False,
        doc="longest span attribute value (characters); the text is cut to it",
    )
    # Read by the GLM-TTS instrumentor, for what GLM-TTS does not say.
    model_version: str | None = setting(
        None, "TTS_OTEL_MODEL_VERSION", text, argument=False, doc="GLM-TTS model version"
    )
    kv_cache: bool = setting(
        True,
        "TTS_OTEL_KV_CACHE",
        flag,
        "use true or false",
        argument=False,
        doc="GLM-TTS decodes with a KV cache",
    )
    # The `otlp` exporter's spool, where batches wait while the collector is away.
    otlp_spool_dir: Path | None = setting(  # noqa: RUF009
        None,
        "TTS_OTEL_OTLP_SPOOL_DIR",
        directory,
        "name a directory (it is created if missing)",
        doc="`otlp` exporter: disk spool, which survives a restart",
        argument=False,
        shown="none: in memory",
    )
    otlp_spool_bytes: int = setting(
        DEFAULT_SPOOL_BYTES,
        "TTS_OTEL_OTLP_SPOOL_BYTES",
        positive_int,
        "use e.g. 67108864 (64 MiB)",
        doc="`otlp` exporter: the spool's bound in bytes",
        argument=False,
        shown="`67108864` (64 MiB)",
    )


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


def origin(field: str, value: object, environ: Mapping[str, str] | None = None) -> str:
    """Who set :class:`Settings`' ``field`` to ``value``: the variable holding it, else the
    configure() keyword, so an error found later (a host that does not resolve) names it."""
    env = os.environ if environ is None else environ
    row = next(row for row in rows(Settings) if row.name == field)
    for variable in row.variables:
        raw = env.get(variable)
        if raw:  # the first set variable is the one read: did it give this value?
            try:
                read = row.parse(raw)
            except ValueError:
                read = None
            return variable if read == value else str(row.argument or variable)
    return str(row.argument or row.variables[0])


def _sdk_limit(variables: str | tuple[str, ...], default: int) -> Any:
    return setting(
        default, variables, non_negative_int, "use a whole number, e.g. 128", argument=False
    )


def _sdk_positive(
    variables: str | tuple[str, ...], parse: Callable[[object], Any], unit: str
) -> Any:
    return setting(None, variables, parse, f"use {unit}", argument=False)


def _otlp(signal: str, name: str) -> tuple[str, str]:
    """The signal's variable, then the general one: the first set wins, as the OTel spec says."""
    return (f"OTEL_EXPORTER_OTLP_{signal}_{name}", f"OTEL_EXPORTER_OTLP_{name}")


_PROTOCOL = choice("grpc", "http/protobuf")
_COMPRESSION = choice("gzip", "deflate", "none")
_SDK_COUNT = 128  # the SDK's default for each count limit


@dataclass(frozen=True)
class SdkSettings:
    """The SDK's own variables that tts-otel relies on, checked in configure().

    The SDK read a bad one as a bare ValueError from a constructor (or at import, for
    ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``), or as an exception on every export; here a
    bad one fails by name with the fix, and an empty one is unset. Units as the Python
    SDK reads them. The span limits are passed to the tracer provider tts-otel builds.
    """

    attribute_length: int = _sdk_limit(
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", DEFAULT_ATTRIBUTE_LENGTH
    )
    attribute_count: int = _sdk_limit("OTEL_ATTRIBUTE_COUNT_LIMIT", _SDK_COUNT)
    span_attribute_count: int = _sdk_limit(
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"), _SDK_COUNT
    )
    event_attribute_count: int = _sdk_limit(
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"), _SDK_COUNT
    )
    link_attribute_count: int = _sdk_limit(
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"), _SDK_COUNT
    )
    span_event_count: int = _sdk_limit("OTEL_SPAN_EVENT_COUNT_LIMIT", _SDK_COUNT)
    span_link_count: int = _sdk_limit("OTEL_SPAN_LINK_COUNT_LIMIT", _SDK_COUNT)
    bsp_queue: int | None = _sdk_positive(
        "OTEL_BSP_MAX_QUEUE_SIZE", positive_int, "spans, e.g. 2048"
    )
    bsp_batch: int | None = _sdk_positive(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", positive_int, "spans, e.g. 512 (at most the queue size)"
    )
    bsp_delay: float | None = _sdk_positive(
        "OTEL_BSP_SCHEDULE_DELAY", positive_int, "milliseconds, e.g. 5000"
    )
    bsp_timeout: float | None = _sdk_positive(
        "OTEL_BSP_EXPORT_TIMEOUT", positive_int, "milliseconds, e.g. 30000"
    )
    metric_interval: float | None = _sdk_positive(
        "OTEL_METRIC_EXPORT_INTERVAL", positive_number, "milliseconds, e.g. 60000"
    )
    metric_timeout: float | None = _sdk_positive(
        "OTEL_METRIC_EXPORT_TIMEOUT", positive_number, "milliseconds, e.g. 30000"
    )
    traces_protocol: str = setting(
        "grpc", _otlp("TRACES", "PROTOCOL"), _PROTOCOL, "use grpc or http/protobuf", argument=False
    )
    metrics_protocol: str = setting(
        "grpc",
        _otlp("METRICS", "PROTOCOL"),
        _PROTOCOL,
        "use grpc or http/protobuf",
        argument=False,
    )
    traces_timeout: float | None = _sdk_positive(
        _otlp("TRACES", "TIMEOUT"), positive_number, "seconds, e.g. 10"
    )
    metrics_timeout: float | None = _sdk_positive(
        _otlp("METRICS", "TIMEOUT"), positive_number, "seconds, e.g. 10"
    )
    traces_compression: str | None = _sdk_positive(
        _otlp("TRACES", "COMPRESSION"), _COMPRESSION, "gzip, deflate or none"
    )
    metrics_compression: str | None = _sdk_positive(
        _otlp("METRICS", "COMPRESSION"), _COMPRESSION, "gzip, deflate or none"
    )
    traces_endpoint: str | None = _sdk_positive(
        _otlp("TRACES", "ENDPOINT"), text, "a URL in UTF-8, e.g. http://127.0.0.1:4317"
    )
    metrics_endpoint: str | None = _sdk_positive(
        _otlp("METRICS", "ENDPOINT"), text, "a URL in UTF-8, e.g. http://127.0.0.1:4317"
    )
    traces_headers: str | None = _sdk_positive(
        _otlp("TRACES", "HEADERS"), text, "key=value pairs in UTF-8, comma-separated"
    )
    metrics_headers: str | None = _sdk_positive(
        _otlp("METRICS", "HEADERS"), text, "key=value pairs in UTF-8, comma-separated"
    )
    resource_attributes: str | None = _sdk_positive(
        "OTEL_RESOURCE_ATTRIBUTES", text, "key=value pairs in UTF-8, comma-separated"
    )


def load_sdk_settings(
    environ: Mapping[str, str] | None = None, *, lenient: bool = False
) -> SdkSettings:
    """The SDK variables of :class:`SdkSettings`; a bad one raises ConfigurationError
    (``lenient``: is logged once, and the SDK's default used)."""
    env = os.environ if environ is None else environ
    sdk = SdkSettings(**resolve(SdkSettings, {}, env, lenient))
    queue = sdk.bsp_queue or _SDK_QUEUE_DEFAULT
    batch = sdk.bsp_batch or _SDK_BATCH_DEFAULT
    if batch > queue:  # the SDK's default batch (512) counts: a queue of 100 alone is refused
        raise ConfigurationError(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            f"{batch} is larger than the queue ({queue})",
            "make it at most OTEL_BSP_MAX_QUEUE_SIZE",
        )
    return sdk


_SDK_QUEUE_DEFAULT: Final = 2048
_SDK_BATCH_DEFAULT: Final = 512


def check_sdk_environment(environ: Mapping[str, str] | None = None) -> SdkSettings:
    """Raise ConfigurationError for an ``OTEL_*`` variable the SDK would choke on."""
    return load_sdk_settings(environ)


def otlp_protocol(signal: str) -> str:
    """The OTLP protocol of ``signal`` (``TRACES`` or ``METRICS``): its own variable,
    else the general one, as the OTel specification says; empty is unset."""
    sdk = load_sdk_settings()
    return sdk.traces_protocol if signal == "TRACES" else sdk.metrics_protocol
