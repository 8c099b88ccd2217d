"""The GLM-TTS instrumentor: ``instrument()`` wraps the contract (``wrapping``) with the
handlers of each kind of call (``handlers``) and hooks gradio's web UI (``web_ui``)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from tts_otel.config import load_settings
from tts_otel.integrations.glmtts.contract import Wrapped
from tts_otel.integrations.glmtts.handlers import Handler, Handlers
from tts_otel.integrations.glmtts.web_ui import GradioHooks
from tts_otel.integrations.glmtts.wrapping import Wrapping
from tts_otel.telemetry import Telemetry, get_telemetry

_log = logging.getLogger(__name__)


class GLMTTSInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps the callables in :data:`CONTRACT`; ``uninstrument()`` restores them exactly.

    ``instrument(model_version=..., kv_cache=...)`` sets attributes GLM-TTS
    does not expose; without them, ``TTS_OTEL_MODEL_VERSION`` and
    ``TTS_OTEL_KV_CACHE`` (GLM-TTS's LLM always decodes with a KV cache, so
    ``kv_cache`` defaults to ``True``). ``tracer_provider=`` and ``meter_provider=``,
    as every OpenTelemetry instrumentor takes them, send GLM-TTS's requests there
    instead of to the active handle's providers.
    """

    # BaseInstrumentor is a singleton whose __init__ runs on every
    # GLMTTSInstrumentor() call: state is set in _instrument, not there.
    _wrapping: Wrapping | None = None
    _gradio: GradioHooks | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        # GLM-TTS is a folder, not a pip package: there is no distribution to check.
        # Where none of its modules can be found, instrument() says so at DEBUG only.
        return ()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        """Instrumented, and something of GLM-TTS was found to instrument."""
        wrapping = self._wrapping
        instrumented = bool(super().is_instrumented_by_opentelemetry)
        return instrumented and wrapping is not None and bool(wrapping.expected)

    def _instrument(self, **kwargs: Any) -> None:
        # TTS_OTEL_MODEL_VERSION and TTS_OTEL_KV_CACHE are rows of the settings table:
        # checked in configure(), read here leniently (a bad one: one warning, the default).
        settings = load_settings(exporters=(), lenient=True)
        version = kwargs.get("model_version", settings.model_version)
        kv_cache = kwargs.get("kv_cache")
        handlers = Handlers(
            version if isinstance(version, str) and version else None,
            settings.kv_cache if kv_cache is None else bool(kv_cache),
            _telemetry_for(kwargs.get("tracer_provider"), kwargs.get("meter_provider")),
        )

        def handler_of(entry: Wrapped) -> Handler:
            return handlers.of(entry.kind)

        self._wrapping = Wrapping(handler_of)
        if self._wrapping.expected:
            self._gradio = GradioHooks(self._wrapping)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._wrapping is not None:
            self._wrapping.unwrap()
        if self._gradio is not None:
            self._gradio.remove()
        self._wrapping = self._gradio = None


def _telemetry_for(tracer_provider: object, meter_provider: object) -> Telemetry | None:
    """A handle on the providers given to ``instrument()``, with the active settings;
    ``None`` (the active handle) when neither was given."""
    if tracer_provider is None and meter_provider is None:
        return None
    from opentelemetry import metrics, trace

    active = get_telemetry()
    return Telemetry(
        active.settings,
        tracer_provider or trace.get_tracer_provider(),  # type: ignore[arg-type]
        meter_provider or metrics.get_meter_provider(),  # type: ignore[arg-type]
        owns_providers=False,
    )
