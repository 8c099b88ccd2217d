"""Telemetry values from the service are checked, never trusted: a bad one is
dropped with one warning per kind of problem and counted, never raised."""

from __future__ import annotations

import logging
import math
import re
import threading
from typing import Final, Literal

from tts_otel._fork import reset_after_fork

_log = logging.getLogger("tts_otel")

# The largest count a metric backend stores (int64): the SDK turns a larger int into a
# float to check it and raises OverflowError, and not on the request's thread but on the
# one that records the metric buffer, or in force_flush().
MAX_COUNT = 2**63 - 1

TextRecording = Literal["off", "plain", "sha256"]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

# A metric label value's most characters: a label is a name to group by, and 20 stage
# names of 100 kB made one Prometheus scrape 50 MB (every series repeats its labels).
MAX_LABEL_CHARS: Final = 256

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

# Enough of a rejected value to recognise it in a warning; a 1 MB string is not logged whole.
_SHOWN_CHARS = 200


def describe(value: object) -> str:
    """``repr(value)`` for a log line, bounded, and never raising.

    The value is one the service got wrong, so its ``__repr__`` may be wrong
    too: formatted lazily by logging, a raising ``__repr__`` becomes a
    "--- Logging error ---" traceback on stderr (and an exception where a
    handler re-raises, as pytest's does). Fall back to the type's name.
    """
    try:
        shown = repr(value)
        if not isinstance(shown, str):
            raise TypeError("__repr__ returned a non-string")
    except Exception:
        return f"<{type(value).__qualname__} that cannot be printed>"
    if len(shown) > _SHOWN_CHARS:
        return f"{shown[:_SHOWN_CHARS]}... ({len(shown)} characters)"
    return shown


def is_utf8(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8: ``os.environ`` holds a variable's non-UTF-8
    bytes as lone surrogates (surrogateescape), which fail later, in an exporter."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_text(value: str) -> str:
    """``value`` itself when it is valid UTF-8, else with each lone surrogate as U+FFFD."""
    return value if is_utf8(value) else _SURROGATE.sub("\ufffd", value)


def plain(value: object) -> object:
    """``value`` as its exact builtin type where it subclasses ``str``, ``int`` or ``float``.

    A ``str``-valued enum is a fine model name, but a subclass may also override
    ``__hash__``, ``__eq__`` or ``__len__``, which the SDK, the cardinality guard
    and the exporters call long after the service's call returned. The exact
    copy keeps the value and drops the behaviour. Other values are returned as given.
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return value


class ValueChecker:
    """Accepts finite, non-negative numbers; counts and warns once about the rest."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.dropped = 0
        self.cut = 0  # values kept, but shortened or with characters replaced
        reset_after_fork(self, ValueChecker._after_fork)

    def _after_fork(self) -> None:
        # A forked child reports its own counts, under its own instance id: the parent's,
        # inherited, would be counted twice wherever the two are summed.
        self._lock = threading.Lock()
        self.dropped = self.cut = 0

    def text(self, name: str, value: str, limit: int | None = None) -> str:
        """``value`` as valid UTF-8 of at most ``limit`` characters; a change is counted.

        A lone surrogate (``os.fsdecode`` of a non-UTF-8 file name, a bad slice) cannot
        be encoded by any exporter: in a metric label it made every later Prometheus
        scrape fail with HTTP 500, in a span its whole batch fail to export.
        """
        safe = valid_text(value)
        if limit is not None and len(safe) > limit:
            safe = safe[:limit]
        if safe is not value:
            self.note_cut(name, value, "longer than allowed, or not valid UTF-8")
        return safe

    def note_cut(self, name: str, value: object, reason: str) -> None:
        """Count a value kept in a changed form; the first time per (name, reason), warn."""
        if self._count("cut", name, reason):
            _log.warning(
                "tts-otel shortened or repaired %s=%s (%s); later values with the same "
                "problem are changed silently and counted in tts.telemetry.dropped"
                '{signal="cut"}',
                name,
                describe(value),
                reason,
            )

    def number(self, name: str, value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.reject(name, value, "not a number")
            return None
        try:
            result = float(value)
        except Exception:
            # An int too large for a float (OverflowError), or a subclass whose
            # __float__ raises: the service's value, not the service's error.
            self.reject(name, value, "not convertible to a float")
            return None
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
        if number > MAX_COUNT:
            self.reject(name, value, "larger than int64")
            return None
        return int(number)

    def _count(self, counter: str, name: str, reason: str) -> bool:
        """Add one to ``counter``; whether (name, reason) is new, to be warned about."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)
            first = (name, reason) not in self._warned
            self._warned.add((name, reason))
        return first

    def reject(self, name: str, value: object, reason: str) -> None:
        """Count ``value`` as dropped; the first time per (name, reason), warn."""
        if self._count("dropped", name, reason):
            _log.warning(
                "tts-otel dropped %s=%s (%s); later values with the same problem are dropped "
                "silently and counted in tts.telemetry.dropped",
                name,
                describe(value),
                reason,
            )
        return None


def flag(raw: object) -> bool:
    """``True``/``False``, or one of the words for them in any case."""
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{describe(raw)} is not a boolean")


def text_mode(raw: object) -> TextRecording:
    """The one reading of ``record_text``, for configure() and synthesis() alike:
    a boolean (or its words), ``"plain"``, or ``"hash"``/``"sha256"``."""
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in ("hash", "sha256"):
            return "sha256"
        if word == "plain":
            return "plain"
    try:
        return "plain" if flag(raw) else "off"
    except ValueError:
        raise ValueError(
            f"{describe(raw)} is not a text recording mode (true, false or hash)"
        ) from None
