"""The cardinality guard: which attributes may become metric labels, and how many values each."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._validation import MAX_LABEL_CHARS, ValueChecker

_log = logging.getLogger(__name__)

# Bounds the memo of already-guarded attribute sets; each entry is a handful of strings.
_MEMO_LIMIT = 4096


class AttributeGuard:
    """Keeps only allowlisted keys and caps the distinct values of each.

    A value seen after a key already has ``max_values`` distinct ones becomes
    ``"other"``: the series count stays bounded however callers label requests.
    Values already admitted stay admitted, so existing series keep their names.
    """

    def __init__(
        self,
        max_values: int,
        values: ValueChecker | None = None,
        allowed: frozenset[str] = semconv.METRIC_ATTRIBUTE_KEYS,
    ):
        self._max_values = max_values
        self._values = ValueChecker() if values is None else values
        self._allowed = allowed
        self._seen: dict[str, set[AttributeValue]] = {}
        self._warned: set[str] = set()
        self._memo: dict[tuple[tuple[str, AttributeValue], ...], dict[str, AttributeValue]] = {}
        self._lock = threading.Lock()
        self.overflowed = 0

    def bound(self, attributes: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
        """The metric attributes for ``attributes``; the result must not be mutated."""
        key = tuple((k, v) for k, v in attributes.items() if v is not None and k in self._allowed)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        with self._lock:
            result = {name: self._admit(name, value) for name, value in key}
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = result
        return result

    def _admit(self, name: str, value: AttributeValue) -> AttributeValue:
        # Every label value passes here once (the memo holds the result): made valid
        # UTF-8 and bounded in length before it is counted as one of the distinct values.
        if isinstance(value, str):
            value = self._values.text(name, value, MAX_LABEL_CHARS)
        seen = self._seen.setdefault(name, set())
        if value in seen:
            return value
        if len(seen) < self._max_values:
            seen.add(value)
            return value
        self.overflowed += 1
        if name not in self._warned:
            self._warned.add(name)
            _log.warning(
                "tts-otel: metric attribute %s has reached %d distinct values; further values "
                "are recorded as %r (raise TTS_OTEL_MAX_ATTRIBUTE_VALUES if this is expected)",
                name,
                self._max_values,
                semconv.OVERFLOW_VALUE,
            )
        return semconv.OVERFLOW_VALUE
