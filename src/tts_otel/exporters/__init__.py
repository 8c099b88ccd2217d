"""Exporters by name: ``console``, ``file``, ``otlp``, ``prometheus``, ``influxdb``.

A name resolves to the parts an SDK pipeline needs: a span exporter and/or a
metric reader. :func:`register_exporter` is the extension point. The built-in
exporters are imported when they are asked for: prometheus_client, protobuf
and the InfluxDB client are not every service's, and importing them all made
``import tts_otel`` several times slower than the SDK's own import.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator

from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from tts_otel.config import Settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.parts import ExporterParts

# What a register_exporter() factory takes and returns is exported beside it.
__all__ = [
    "ExporterFactory",
    "ExporterParts",
    "Settings",
    "available_exporters",
    "build_exporter",
    "register_exporter",
]


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


def _lazy(module: str, factory: str, extra: str) -> ExporterFactory:
    """A factory that imports ``module`` on first use; without its packages,
    a ConfigurationError names the extra that brings them."""

    def build(settings: Settings) -> ExporterParts:
        with _needs(extra):
            built: ExporterFactory = getattr(importlib.import_module(module), factory)
            return built(settings)

    return build


@contextlib.contextmanager
def _needs(extra: str) -> Iterator[None]:
    try:
        yield
    except ModuleNotFoundError as error:
        raise ConfigurationError(
            "exporters",
            f"{error.name} is not installed",
            f"pip install 'tts-otel[{extra}]'",
        ) from error


register_exporter("console", _console)
register_exporter("file", _lazy("tts_otel.exporters.otlp_json", "file_exporter", "otlp"))
register_exporter("otlp", _lazy("tts_otel.exporters.otlp", "otlp_exporter", "otlp"))
register_exporter(
    "prometheus", _lazy("tts_otel.exporters.prometheus", "prometheus_endpoint", "prometheus")
)
register_exporter(
    "influxdb", _lazy("tts_otel.exporters.influxdb.exporter", "influxdb_exporter", "influxdb")
)
