"""The SDK's trace module, imported whatever ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` holds.

``opentelemetry.sdk.trace`` reads that variable when it is imported (a constant kept
for backward compatibility), so a bad value made ``import tts_otel`` raise. Imported
here first, with a bad value hidden for the moment of the import: importing never
raises, one warning names the variable, and configure() refuses it by name
(:class:`tts_otel.config.SdkSettings`), as it does every other bad setting.
"""

from __future__ import annotations

import logging
import os

_VARIABLE = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"


def import_sdk_trace() -> None:
    try:
        import opentelemetry.sdk.trace
    except ValueError:
        raw = os.environ.pop(_VARIABLE, None)
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        finally:
            if raw is not None:
                os.environ[_VARIABLE] = raw
        logging.getLogger("tts_otel.config").warning(
            "tts-otel: %s is not a whole number of 0 or more; the SDK's default is used "
            "until it is fixed (configure() refuses it)",
            _VARIABLE,
        )


import_sdk_trace()
