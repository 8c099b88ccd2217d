"""Time the request thread spends inside tts-otel, measured inside a real workload."""

from __future__ import annotations

import time
from collections.abc import Callable

from tts_otel import Stage, Synthesis


class TelemetryClock:
    """Adds up the time the request thread spends inside tts-otel's own code.

    Wraps every tts-otel entry point the pipeline calls. Inside the real
    workload, so cache effects of the model's work are included; the two
    extra clock reads per call make the figure slightly pessimistic.
    """

    METHODS: tuple[tuple[type, str], ...] = (
        (Synthesis, "__init__"),
        (Synthesis, "__enter__"),
        (Synthesis, "__exit__"),
        (Synthesis, "segment"),
        (Synthesis, "stage"),
        (Synthesis, "audio"),
        (Synthesis, "speech_tokens"),
        (Stage, "__enter__"),
        (Stage, "__exit__"),
    )

    def __init__(self) -> None:
        self.seconds = 0.0
        self._originals: list[tuple[type, str, Callable[..., object]]] = []

    def __enter__(self) -> TelemetryClock:
        for owner, name in self.METHODS:
            original = getattr(owner, name)
            self._originals.append((owner, name, original))
            setattr(owner, name, self._timed(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in self._originals:
            setattr(owner, name, original)

    def _timed(self, original: Callable[..., object]) -> Callable[..., object]:
        def run(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return run
