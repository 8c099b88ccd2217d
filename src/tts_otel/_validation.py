"""Telemetry values from the service are checked, never trusted: a bad one is
dropped with one warning per kind of problem and counted, never raised."""

from __future__ import annotations

import logging
import math
import threading

_log = logging.getLogger("tts_otel")


class ValueChecker:
    """Accepts finite, non-negative numbers; counts and warns once about the rest."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.dropped = 0

    def number(self, name: str, value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.reject(name, value, "not a number")
            return None
        result = float(value)
        if not math.isfinite(result):
            self.reject(name, value, "not finite")
            return None
        if result < 0:
            self.reject(name, value, "negative")
            return None
        return result

    def positive(self, name: str, value: object) -> float | None:
        number = self.number(name, value)
        if number == 0:
            self.reject(name, value, "zero")
            return None
        return number

    def count(self, name: str, value: object) -> int | None:
        number = self.number(name, value)
        if number is None:
            return None
        if not number.is_integer():
            self.reject(name, value, "not a whole number")
            return None
        return int(number)

    def reject(self, name: str, value: object, reason: str) -> None:
        """Count ``value`` as dropped; the first time per (name, reason), warn."""
        with self._lock:
            self.dropped += 1
            first = (name, reason) not in self._warned
            self._warned.add((name, reason))
        if first:
            _log.warning(
                "tts-otel dropped %s=%r (%s); later values with the same problem are dropped "
                "silently and counted in tts.telemetry.dropped",
                name,
                value,
                reason,
            )
        return None
