"""tts-otel: OpenTelemetry for neural text-to-speech services.

Quick start::

    import tts_otel

    tts_otel.configure(service_name="tts", exporters="file")
    with tts_otel.synthesis(model="glm-tts", sample_rate=24000, kv_cache=True, text=text) as req:
        with req.stage("text_normalization"):
            ...
        with req.stage("acoustic"):
            ...
        req.audio(samples=len(wav), sample_rate=24000)

Every request becomes a ``tts.synthesize`` span with one child span per
stage, and feeds latency, real-time-factor and size histograms. Names are in
:mod:`tts_otel.semconv`.
"""

import importlib as _importlib
from typing import TYPE_CHECKING

# First: the SDK's trace module reads a variable at import that could make this raise.
from tts_otel import _sdk_trace  # noqa: F401  # isort: skip
from tts_otel import semconv
from tts_otel.errors import ConfigurationError
from tts_otel.request import Synthesis, current, synthesis
from tts_otel.stages import Stage, stage
from tts_otel.telemetry import Telemetry, get_telemetry
from tts_otel.version import __version__

if TYPE_CHECKING:
    from tts_otel._bootstrap import configure
    from tts_otel.exporters import register_exporter

__all__ = [
    "ConfigurationError",
    "Stage",
    "Synthesis",
    "Telemetry",
    "__version__",
    "configure",
    "current",
    "get_telemetry",
    "register_exporter",
    "semconv",
    "stage",
    "synthesis",
]

# These two bring the settings table, the exporters and the SDK's export pipeline, which
# a service needs once, at start: they load on first use (PEP 562), which keeps
# `import tts_otel` within 20 ms of the SDK's own import (benchmarks/import_time.py).
_LOADED_ON_USE = {"configure": "tts_otel._bootstrap", "register_exporter": "tts_otel.exporters"}

if not TYPE_CHECKING:  # type checkers see the imports above, and a misspelt name stays one

    def __getattr__(name: str) -> object:
        module = _LOADED_ON_USE.get(name)
        if module is None:
            raise AttributeError(f"module 'tts_otel' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    # The public names and the module's own dunders, not its import helpers.
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
