"""What ``opentelemetry-instrument`` looks for to set up the SDK, so tts-otel alone is enough.

``opentelemetry-instrument`` only instruments; it builds providers and
exporters through an ``opentelemetry_configurator`` entry point, which
normally comes from ``opentelemetry-distro``. Without one, nothing is
exported and nothing says so. tts-otel registers this configurator: it runs
:func:`tts_otel.configure` from the ``TTS_OTEL_*`` and ``OTEL_*``
variables. ``opentelemetry-instrument`` loads only the first configurator it
finds; if another one (the distro's) ran first and set the global
providers, tts-otel uses those, and this one does nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace

from tts_otel._bootstrap import configure
from tts_otel.errors import ConfigurationError

_log = logging.getLogger(__name__)

# OpenTelemetry's default for OTEL_TRACES_EXPORTER, which the distro also applies.
DEFAULT_EXPORTERS = "otlp"


class Configurator:
    """Entry point ``opentelemetry_configurator`` named ``tts_otel``."""

    def configure(self, **_kwargs: Any) -> None:
        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            _log.info("tts-otel: tracer provider already set up; tts-otel uses it")
            return
        named = os.environ.get("TTS_OTEL_EXPORTERS") or os.environ.get("OTEL_TRACES_EXPORTER")
        if named:  # asked for: a bad or missing exporter fails at start, naming the fix
            configure(exporters=named)
            return
        try:
            configure(exporters=DEFAULT_EXPORTERS)
        except ConfigurationError as error:
            # Nobody asked for OTLP: without its extra, run unexported rather than
            # stop the service at start.
            _log.warning("tts-otel: %s; no exporter is named, so nothing is exported", error)
            configure(exporters=())
        else:
            _log.info(
                "tts-otel: no TTS_OTEL_EXPORTERS or OTEL_TRACES_EXPORTER; exporting %s",
                DEFAULT_EXPORTERS,
            )
