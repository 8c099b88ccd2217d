"""Exporters by name: ``console``, ``file``, ``otlp``, ``prometheus``, ``influxdb``.

A name resolves to the parts an SDK pipeline needs: a span exporter and/or a
metric reader. :func:`register_exporter` is the extension point.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from tts_otel.config import Settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.influxdb import influxdb_exporter
from tts_otel.exporters.otlp_json import OtlpJsonMetricExporter, OtlpJsonSpanExporter
from tts_otel.exporters.parts import ExporterParts
from tts_otel.exporters.prometheus import prometheus_endpoint

__all__ = ["ExporterFactory", "ExporterParts", "available_exporters", "build_exporter",
           "register_exporter"]  # fmt: skip


ExporterFactory = Callable[[Settings], ExporterParts]

_registry: dict[str, ExporterFactory] = {}


def register_exporter(name: str, factory: ExporterFactory) -> None:
    """Make ``configure(exporters=[name])`` and ``--exporter name`` use ``factory``."""
    _registry[name] = factory


def available_exporters() -> list[str]:
    return sorted(_registry)


def build_exporter(name: str, settings: Settings) -> ExporterParts:
    factory = _registry.get(name)
    if factory is not None:
        return factory(settings)
    raise ConfigurationError(
        "exporter", f"unknown exporter {name!r}", f"use one of {', '.join(available_exporters())}"
    )


def _console(_settings: Settings) -> ExporterParts:
    return ExporterParts(
        ConsoleSpanExporter(), PeriodicExportingMetricReader(ConsoleMetricExporter())
    )


def _file(settings: Settings) -> ExporterParts:
    directory = settings.output_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            "TTS_OTEL_OUTPUT_DIR", f"cannot create {directory}: {error.strerror}",
            "point it at a writable directory",
        ) from error  # fmt: skip
    return ExporterParts(
        OtlpJsonSpanExporter(directory / "traces.jsonl"),
        PeriodicExportingMetricReader(OtlpJsonMetricExporter(directory / "metrics.jsonl")),
        where=f"file: {directory / 'traces.jsonl'} and {directory / 'metrics.jsonl'}",
    )


def _otlp(_settings: Settings) -> ExporterParts:
    # The OTLP exporters read OTEL_EXPORTER_OTLP_* themselves; the protocol
    # variable picks the transport as the OTel specification describes.
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    else:
        raise ConfigurationError(
            "OTEL_EXPORTER_OTLP_PROTOCOL", f"{protocol!r} is not supported",
            "use grpc or http/protobuf",
        )  # fmt: skip
    return ExporterParts(OTLPSpanExporter(), PeriodicExportingMetricReader(OTLPMetricExporter()))


register_exporter("console", _console)
register_exporter("file", _file)
register_exporter("otlp", _otlp)
register_exporter("prometheus", prometheus_endpoint)
register_exporter("influxdb", influxdb_exporter)
