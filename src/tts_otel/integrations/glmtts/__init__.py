"""GLM-TTS instrumentor: spans and metrics for GLM-TTS's own classes, without touching its code.

    from tts_otel.integrations.glmtts import GLMTTSInstrumentor

    tts_otel.configure(exporters="otlp")
    GLMTTSInstrumentor().instrument(model_version="1.0")

Or with no code change: ``opentelemetry-instrument python glmtts_inference.py``
(the ``opentelemetry_instrumentor`` entry point finds it; tts-otel's
``opentelemetry_configurator`` sets up the SDK from ``OTEL_*`` and
``TTS_OTEL_*`` variables).

One user request is one ``tts.synthesize`` trace: ``generate_long`` (or
``Token2Wav.token2wav_stream`` for streaming) is where the instrumentor
learns of it, and the work its callers did just before in the same context
(prompt normalisation, speaker embedding, for streaming the LLM) is
adopted into it, with the request's span starting at that work (see
``prologue``). Each text segment gets its own ``text_normalization``,
``acoustic`` (``acoustic.llm``, ``acoustic.flow``) and ``vocoder`` spans.
Audio is counted from what the call returns, when it returns: that is when
the caller can play it, streaming or not.

Modules are wrapped when they are imported (post-import hooks), so the
import order does not matter; ``glmtts_inference.py`` run as a script is
wrapped in ``__main__``, where its ``jsonl_generate`` looks ``generate_long`` up.
"""

from tts_otel.integrations.glmtts.contract import CONTRACT, Kind, Wrapped, argument
from tts_otel.integrations.glmtts.handlers import MODEL_NAME
from tts_otel.integrations.glmtts.instrumentor import GLMTTSInstrumentor

__all__ = ["CONTRACT", "MODEL_NAME", "GLMTTSInstrumentor", "Kind", "Wrapped", "argument"]
