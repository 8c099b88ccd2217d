"""``configure()``: build (or adopt) the providers and the exporters, once, at start."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from tts_otel._batching import CountingBatchSpanProcessor
from tts_otel._fork import follow_into_workers
from tts_otel._settings import rows
from tts_otel._validation import describe
from tts_otel.config import (
    SdkSettings,
    Settings,
    check_sdk_environment,
    exporter_names,
    load_settings,
    origin,
)
from tts_otel.errors import ConfigurationError
from tts_otel.exporters import ExporterParts, available_exporters, build_exporter
from tts_otel.gpu.cuda import CudaRuntime
from tts_otel.gpu.nvml import NvmlReader
from tts_otel.telemetry import Telemetry, set_telemetry

_log = logging.getLogger(__name__)

ExporterSpec = str | SpanExporter | SpanProcessor | MetricExporter | MetricReader


def _split(
    exporters: Sequence[ExporterSpec],
    names: tuple[str, ...],
    settings: Settings,
) -> tuple[list[SpanExporter | SpanProcessor], list[MetricReader], list[ExporterParts]]:
    """Span exporters (batched later, once the meter provider exists) and processors,
    metric readers, and the parts built from exporter names."""
    processors: list[SpanExporter | SpanProcessor] = []
    readers: list[MetricReader] = []
    built: list[ExporterParts] = []
    metric_names = names if settings.metric_exporters is None else settings.metric_exporters
    for name in dict.fromkeys((*names, *metric_names)):
        try:
            parts = build_exporter(name, settings)
        except ConfigurationError:
            _close(built)
            raise
        built.append(parts)
        # A part the signal does not want is shut down, not left holding what it opened
        # (a reader left unregistered also warns at every interval).
        if parts.span_exporter is not None and name in names:
            processors.append(parts.span_exporter)
        elif parts.span_exporter is not None:
            parts.span_exporter.shutdown()
        if parts.metric_reader is not None and name in metric_names:
            readers.append(parts.metric_reader)
        elif parts.metric_reader is not None:
            parts.metric_reader.shutdown()
    for item in exporters:
        if isinstance(item, str):
            continue
        if isinstance(item, SpanExporter | SpanProcessor):
            processors.append(item)
        elif isinstance(item, MetricExporter):
            readers.append(PeriodicExportingMetricReader(item))
        elif isinstance(item, MetricReader):
            readers.append(item)
        else:
            _close(built)
            raise ConfigurationError(
                "exporters",
                f"{item!r} is not an exporter",
                "pass a name, a SpanExporter, SpanProcessor, MetricExporter or MetricReader",
            )
    return processors, readers, built


def _check_exporter_names(settings: Settings, in_environment: bool) -> None:
    """Refuse a name no exporter has, before any is built, naming where it came from."""
    known = available_exporters()
    for field in ("exporters", "metric_exporters"):
        names: tuple[str, ...] = getattr(settings, field) or ()
        for name in names:
            if name not in known:
                where = origin(field, names) if in_environment else "exporters"
                raise ConfigurationError(
                    where, f"unknown exporter {describe(name)}", f"use one of {', '.join(known)}"
                )


def _close(built: list[ExporterParts]) -> None:
    """Release what already-built exporters hold (a listening socket) when start-up fails."""
    for parts in built:
        if parts.close is not None:
            parts.close()


def configure(
    service_name: str | None = None,
    exporters: str | Sequence[ExporterSpec] | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    timing: str | None = None,
    record_text: bool | str | None = None,
    gpu_memory: bool | None = None,
    nvml: bool | None = None,
    output_dir: str | Path | None = None,
    output_mode: int | str | None = None,
    max_attribute_values: int | None = None,
    metric_buffer_size: int | None = None,
    prometheus: bool | int | str | None = None,
    set_global: bool = True,
    flush_on_signals: bool = True,
    cuda: CudaRuntime | Literal["auto"] | None = "auto",
    nvml_reader: NvmlReader | None = None,
) -> Telemetry:
    """Set up tts-otel and make it the active handle; returns it.

    Each setting comes from its argument, else its ``TTS_OTEL_*``/``OTEL_*``
    variable, else a default (the table in :class:`~tts_otel.config.Settings`).
    ``exporters`` takes names (``"console,file"``) and SDK exporter, processor
    or reader instances. Pass ``tracer_provider`` and ``meter_provider`` to use
    providers the application built itself; metric readers cannot be added to
    an existing meter provider, so give it yours when you create it.
    ``prometheus=True``, a port or ``"host:port"`` adds the Prometheus endpoint
    (port 0: a free port, in ``destinations``). Bad settings raise ConfigurationError.

    ``cuda``: ``"auto"`` loads torch's CUDA when a setting needs it; ``None``
    never does; or pass a :class:`~tts_otel.gpu.CudaRuntime` (a fake in tests).
    ``flush_on_signals`` (from the main thread): on SIGTERM and SIGINT, flush,
    then run the handler that was there before, or the default action.
    """
    # First, while locals() holds the parameters alone: the settings table names the
    # keywords that are settings, so they are not listed here a second time.
    given = {name: value for name, value in locals().items() if name in SETTING_KEYWORDS}
    specs = list(exporter_names(exporters)) if isinstance(exporters, str) else exporters
    sdk = check_sdk_environment()
    settings = _settings(given, specs, prometheus)
    _check_exporter_names(settings, in_environment=specs is None)
    processors, readers, built = _split(specs or [], settings.exporters, settings)
    owns = tracer_provider is None and meter_provider is None
    tracer_provider, meter_provider, batched = _providers(
        settings,
        sdk,
        tracer_provider,
        meter_provider,
        resource_attributes,
        processors,
        readers,
        built,
    )
    telemetry = Telemetry(
        settings,
        tracer_provider,
        meter_provider,
        owns_providers=owns,
        cuda=cuda,
        nvml_reader=nvml_reader,
        dropped_spans=[processor.dropped for processor in batched],
        flush_on_signals=flush_on_signals,
        destinations=[p.where for p in built if p.where],
        closers=[p.close for p in built if p.close is not None],
        health=[p.health for p in built if p.health is not None],
    )
    if set_global and owns:
        _set_global_providers(tracer_provider, meter_provider)
    follow_into_workers(telemetry, owns)  # multiprocessing's, which end by os._exit
    set_telemetry(telemetry)
    return telemetry


# configure()'s keywords that are settings: the table's, less `prometheus`, which
# sets two of them and is parsed by _prometheus_address.
SETTING_KEYWORDS: Final = frozenset(
    row.argument for row in rows(Settings) if row.argument is not None
) - {"prometheus"}


def _settings(
    given: dict[str, Any],
    specs: Sequence[ExporterSpec] | None,
    prometheus: bool | int | str | None,
) -> Settings:
    """The settings configure() runs with: the names among ``specs`` are the exporters
    (none given: from the environment), and ``prometheus`` adds its exporter."""
    given["exporters"] = None if specs is None else tuple(e for e in specs if isinstance(e, str))
    given["prometheus_host"], given["prometheus_port"] = _prometheus_address(prometheus)
    settings = load_settings(**given)
    if specs is not None:  # exporters named in code send both signals
        settings = dataclasses.replace(settings, metric_exporters=None)
    # `prometheus=0` is a port (any free one), not False.
    wants_prometheus = prometheus is not None and prometheus is not False
    if wants_prometheus and "prometheus" not in settings.exporters:
        settings = dataclasses.replace(settings, exporters=(*settings.exporters, "prometheus"))
    metrics = settings.metric_exporters
    if wants_prometheus and metrics is not None and "prometheus" not in metrics:
        settings = dataclasses.replace(settings, metric_exporters=(*metrics, "prometheus"))
    if _sdk_disabled() and settings.exporters:
        # The SDK's providers are no-ops then; opening files and ports for them is not.
        _log.info(
            "tts-otel: OTEL_SDK_DISABLED is set; not starting %s", ", ".join(settings.exporters)
        )
        settings = dataclasses.replace(settings, exporters=(), metric_exporters=None)
    return settings


def _providers(
    settings: Settings,
    sdk: SdkSettings,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    resource_attributes: Mapping[str, AttributeValue] | None,
    processors: Sequence[SpanExporter | SpanProcessor],
    readers: list[MetricReader],
    built: list[ExporterParts],
) -> tuple[TracerProvider, MeterProvider, list[CountingBatchSpanProcessor]]:
    """The application's providers, checked against what must be added to them, or new
    ones; with the span processors added. A refusal releases what ``built`` holds."""
    if processors and not isinstance(tracer_provider, SdkTracerProvider | None):
        _close(built)
        raise ConfigurationError(
            "tracer_provider",
            "span exporters need an SDK TracerProvider",
            "pass an opentelemetry.sdk.trace.TracerProvider or no tracer_provider",
        )
    if readers and meter_provider is not None:
        _close(built)
        raise ConfigurationError(
            "meter_provider",
            "metric readers cannot be added to a MeterProvider after it is built",
            "create your MeterProvider with the reader, or let configure() build the providers",
        )
    resource = Resource.create(
        {"service.name": settings.service_name, **(resource_attributes or {})}
    )
    if meter_provider is None:
        meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers)
    if tracer_provider is None:
        tracer_provider = SdkTracerProvider(
            resource=resource, span_limits=_span_limits(settings, sdk)
        )
    batched: list[CountingBatchSpanProcessor] = []
    if isinstance(tracer_provider, SdkTracerProvider):
        batched = _add_processors(tracer_provider, processors, meter_provider)
    return tracer_provider, meter_provider, batched


def _span_limits(settings: Settings, sdk: SdkSettings) -> SpanLimits:
    """Every limit given, so the SDK reads none of its variables itself (they are
    checked in the settings tables); attribute values bounded in length by default."""
    return SpanLimits(
        max_attributes=sdk.attribute_count,
        max_events=sdk.span_event_count,
        max_links=sdk.span_link_count,
        max_span_attributes=sdk.span_attribute_count,
        max_event_attributes=sdk.event_attribute_count,
        max_link_attributes=sdk.link_attribute_count,
        max_attribute_length=sdk.attribute_length,
        max_span_attribute_length=settings.span_attribute_length,
    )


def _add_processors(
    tracer_provider: SdkTracerProvider,
    processors: Sequence[SpanExporter | SpanProcessor],
    meter_provider: MeterProvider,
) -> list[CountingBatchSpanProcessor]:
    """Batch each exporter; returns the batching processors, whose drops tts-otel counts."""
    batched: list[CountingBatchSpanProcessor] = []
    for item in processors:
        if isinstance(item, SpanExporter):
            # With the meter provider, OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED also
            # gives the SDK's own otel.sdk.processor.span.processed counts.
            item = CountingBatchSpanProcessor(item, meter_provider=meter_provider)
            batched.append(item)
        tracer_provider.add_span_processor(item)
    return batched


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _prometheus_address(prometheus: bool | int | str | None) -> tuple[str | None, int | None]:
    """``True`` -> defaults; ``9464`` -> port; ``"0.0.0.0:9464"`` -> host and port."""
    if prometheus is None or isinstance(prometheus, bool):
        return None, None
    if isinstance(prometheus, int):
        return None, prometheus
    host, _, port = prometheus.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(
            "prometheus", f"{prometheus!r} is not host:port", "use e.g. '127.0.0.1:9464' or a port"
        )
    return host, int(port)


def _set_global_providers(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    # The API allows one global provider per process; keep the first and say so.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(tracer_provider)
    else:
        _log.info("tts-otel: a global TracerProvider is already set; leaving it in place")
    if type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
        metrics.set_meter_provider(meter_provider)
    else:
        _log.info("tts-otel: a global MeterProvider is already set; leaving it in place")
