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

from tts_otel import semconv
from tts_otel._bootstrap import configure
from tts_otel.errors import ConfigurationError
from tts_otel.exporters import register_exporter
from tts_otel.request import Synthesis, current, synthesis
from tts_otel.stages import Stage, stage
from tts_otel.telemetry import Telemetry, get_telemetry
from tts_otel.version import __version__

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
