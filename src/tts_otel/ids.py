"""Trace and span ids that no seeding of ``random`` can repeat.

The SDK's default ``RandomIdGenerator`` draws from the global ``random``
module. ML pipelines seed it on purpose: GLM-TTS calls ``random.seed(seed)``
before every text segment, so after each seed the SDK hands out the same ids
again, and requests in different processes share one trace id. This
generator draws from a private ``random.Random`` seeded from the operating
system, re-seeded in a forked child (which would otherwise repeat its
parent's sequence); it costs the same as the default.
"""

from __future__ import annotations

import logging
import os
import random

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from tts_otel._fork import reset_after_fork

_log = logging.getLogger(__name__)


class SeedProofIdGenerator(IdGenerator):
    """Random ids from a generator the application's ``random.seed`` does not reach."""

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))
        reset_after_fork(self, SeedProofIdGenerator.reseed)

    def reseed(self) -> None:
        self._random.seed(os.urandom(32))

    def generate_span_id(self) -> int:
        span_id = self._random.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = self._random.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._random.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = self._random.getrandbits(128)
        return trace_id

    def is_trace_id_random(self) -> bool:
        return True


def protect_ids(provider: object) -> None:
    """Give an SDK provider that still has the default generator a seed-proof one.

    Only tracers created afterwards use it (the SDK hands each tracer the
    provider's generator when the tracer is made), so this runs before
    tts-otel asks for its tracer. A generator the application chose itself
    is left alone.
    """
    if not isinstance(provider, SdkTracerProvider):
        return
    if type(provider.id_generator) is RandomIdGenerator:
        provider.id_generator = SeedProofIdGenerator()  # type: ignore[assignment]
        _log.debug("tts-otel: the tracer provider's id generator no longer follows random.seed")
