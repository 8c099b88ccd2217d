"""The writer both InfluxDB exporters share: batches sent in order, retried, paused, spooled.

Each export is one bounded, synchronous write on the SDK's own thread, never
on the request path. 429 and 5xx are retried with exponential backoff and
jitter, honouring ``Retry-After``, within one deadline per export. What still
fails goes to a bounded spool and is replayed in order once the server
answers. After such a failure the writer stops calling the server for a
growing, jittered pause (up to ``BACKOFF_MAX_S``): exports in it go straight
to the spool, so a dead server costs each export microseconds, not a timeout.
A connection error (refused, reset, timed out) skips the retries inside the
export and starts that pause at once: the backoff for an absent server runs
across exports. Retrying it inside the export blocked the SDK's thread for
the whole deadline, and at 450 spans/s its 2048-span queue overflowed behind
it, dropping spans before they could reach the spool.
Shutdown makes one last attempt to deliver the spool. Any other 4xx is
permanent: it is logged once per cause, with the server's message, and its
points are counted as dropped.
Credentials never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Final

from tts_otel._fork import reset_after_fork
from tts_otel.exporters.influxdb.settings import InfluxSettings
from tts_otel.exporters.influxdb.spool import DiskSpool, MemorySpool, Spool
from tts_otel.exporters.influxdb.transport import (
    PartialWriteError,
    PermanentError,
    RetryableError,
    Transport,
    UnreachableError,
    V1Transport,
    V2Transport,
    dropped_by_partial_write,
)

_log = logging.getLogger(__name__)


# What InfluxDB 1.x (TSM, inmem index) answers once the collector's span schema
# (trace_id and span_id as tags: one new series per span) meets its defaults.
_SERIES_LIMITS: Final = ("max-values-per-tag limit exceeded", "max-series-per-database limit")
SPAN_STORAGE_FIX: Final = (
    "spans are stored as the collector stores them, with trace_id and span_id as tags, so "
    "every span is a new series; on InfluxDB 1.x set, in [data], max-values-per-tag = 0, "
    'max-series-per-database = 0 and index-version = "tsi1", and write spans to a short '
    "retention policy (TTS_OTEL_INFLUXDB_RP); InfluxDB 3 has no such limit"
)
# A series key (measurement and tags) above this is refused by InfluxDB.
MAX_KEY_BYTES: Final = 65535
_KEY_END = re.compile(r"(?:[^ \\]|\\.)*")


def _key_too_long(line: str) -> bool:
    if len(line) * 4 <= MAX_KEY_BYTES:  # a character is at most 4 UTF-8 bytes
        return False
    key = _KEY_END.match(line)
    return key is not None and len(key.group().encode("utf-8", "replace")) > MAX_KEY_BYTES


class Outcome(enum.Enum):
    """What became of one batch offered to the server."""

    SENT = "sent"  # stored: all of it, or all a partial write kept (the rest counted as dropped)
    DROPPED = "dropped"  # refused for good: counted as dropped, never offered again
    RETRY = "retry"  # the server could not take it now: keep it for later


class InfluxWriter:
    """Sends batches in order; spools what cannot be sent; counts everything. Never raises."""

    BACKOFF_BASE_S: Final = 0.25
    BACKOFF_MAX_S: Final = 5.0

    def __init__(self, settings: InfluxSettings, transport: Transport | None = None) -> None:
        self.settings = settings
        self._transport = transport or (
            V2Transport(settings) if settings.api == "v2" else V1Transport(settings)
        )
        self.spool: Spool = (
            DiskSpool(settings.spool_dir, settings.spool_bytes)
            if settings.spool_dir is not None
            else MemorySpool(settings.spool_bytes)
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._outage_logged: set[str] = set()  # cleared when the server answers again
        self._refusals_logged: set[str] = set()  # once per cause for the writer's life
        self.sent_points = 0
        self.rejected_points = 0
        self._closed = False
        self._pauses = 0  # consecutive exports that found the server unreachable
        self._pause_until = 0.0
        # A child forked while an export held the lock would wait for it forever.
        reset_after_fork(self, InfluxWriter._after_fork)

    def _after_fork(self) -> None:
        self._lock, self._stop = threading.Lock(), threading.Event()
        if isinstance(self.spool, MemorySpool):
            # The parent still holds and delivers these batches; sent twice they would count twice.
            self.spool = MemorySpool(self.settings.spool_bytes)

    @property
    def dropped_points(self) -> int:
        return self.rejected_points + self.spool.dropped_points

    def health(self) -> Iterable[tuple[str, int]]:
        """Points sent and dropped (counts), and what the spool holds now against its bound
        (levels): the names :class:`tts_otel.telemetry.Telemetry` exports them by."""
        points, size = self.spool.held()
        return (
            ("sent", self.sent_points),
            ("dropped", self.dropped_points),
            ("spooled", points),
            ("spool_bytes", size),
            ("spool_limit_bytes", self.settings.spool_bytes),
        )

    def refuse(self, points: int, cause: str) -> None:
        """Count ``points`` that cannot be stored (logged once per cause)."""
        self.rejected_points += points
        self._log_refusal(cause, cause)

    def write(self, lines: Sequence[str]) -> bool:
        """Send ``lines`` after anything spooled; ``False`` when they were spooled or dropped."""
        lines = self._storable(lines)
        if not lines:
            return True
        body = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            if self._closed or time.monotonic() < self._pause_until:
                self.spool.add(body, len(lines))
                return False
            deadline = time.monotonic() + self.settings.export_deadline_s
            outcome = (
                self._send(body, len(lines), deadline) if self._replay(deadline) else Outcome.RETRY
            )
            if outcome is Outcome.RETRY:
                self.spool.add(body, len(lines))
                self._pause()
                return False
            self._pauses = 0
            return outcome is Outcome.SENT

    def _storable(self, lines: Sequence[str]) -> Sequence[str]:
        """``lines`` without points InfluxDB would refuse: one refused point fails no other."""
        if not any(_key_too_long(line) for line in lines):
            return lines
        kept = [line for line in lines if not _key_too_long(line)]
        self.refuse(len(lines) - len(kept), f"series key over {MAX_KEY_BYTES} bytes, point dropped")
        return kept

    def _replay(self, deadline: float) -> bool:
        """Send spooled batches, oldest first; ``False`` if the server still cannot take them."""
        return self.spool.replay(
            lambda body, points: self._send(body, points, deadline) is not Outcome.RETRY
        )

    def _pause(self) -> None:
        """Leave the server alone for a while after an export found it unreachable."""
        self._pauses += 1
        longest = min(self.BACKOFF_MAX_S, self.BACKOFF_BASE_S * 2**self._pauses)
        self._pause_until = time.monotonic() + random.uniform(longest / 2, longest)

    def _send(self, body: bytes, points: int, deadline: float) -> Outcome:
        attempt = 0
        while True:
            try:
                self._transport.write(body)
            except PartialWriteError as error:
                dropped = dropped_by_partial_write(str(error), points)
                self.sent_points += points - dropped
                self.rejected_points += dropped
                self._log_partial_write(str(error))
                return Outcome.SENT
            except PermanentError as error:
                self.rejected_points += points
                self._log_refusal(str(error).split(":")[0], str(error))
                return Outcome.DROPPED
            except RetryableError as error:
                delay = min(self.BACKOFF_MAX_S, self.BACKOFF_BASE_S * 2**attempt)
                delay = (
                    error.retry_after if error.retry_after is not None else random.uniform(0, delay)
                )
                attempt += 1
                if (
                    isinstance(error, UnreachableError)  # the pause that follows is its backoff
                    or self._stop.is_set()
                    or time.monotonic() + delay > deadline
                ):
                    self._log_outage(f"{error}; batches are spooled and replayed when it answers")
                    return Outcome.RETRY
                self._stop.wait(delay)
                continue
            except Exception as error:  # a transport's own bug must not reach the SDK's thread
                self.rejected_points += points
                self._log_refusal(type(error).__name__, f"{type(error).__name__}: {error}")
                return Outcome.DROPPED
            self.sent_points += points
            if self._outage_logged:
                _log.info("tts-otel: InfluxDB at %s accepts writes again", self.settings.url)
                self._outage_logged.clear()
            return Outcome.SENT

    def _log_partial_write(self, message: str) -> None:
        if any(limit in message for limit in _SERIES_LIMITS):
            if "series limit" not in self._refusals_logged:
                self._refusals_logged.add("series limit")
                _log.error(
                    "tts-otel: InfluxDB at %s stores no new series: %s. Fix: %s. Other points "
                    "are still stored; refused ones are counted as dropped",
                    self.settings.target, message.strip()[:300], SPAN_STORAGE_FIX,
                )  # fmt: skip
            return
        self._log_refusal("partial write", f"partial write, the other points are stored: "
                          f"{message.strip()[:300]}")  # fmt: skip

    def _log_refusal(self, cause: str, message: str) -> None:
        if cause not in self._refusals_logged:
            self._refusals_logged.add(cause)
            _log.warning("tts-otel: InfluxDB write to %s failed: %s", self.settings.target, message)

    def _log_outage(self, message: str) -> None:
        cause = message.split(":")[0]
        if cause not in self._outage_logged:
            self._outage_logged.add(cause)
            _log.warning("tts-otel: InfluxDB write to %s failed: %s", self.settings.target, message)

    def close(self) -> None:
        """Interrupt waits, try once more to deliver the spool, release the connection.

        What still cannot be sent stays spooled (on disk if configured); each
        batch gets one attempt, so a dead server delays this by one timeout.
        """
        self._stop.set()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._replay(time.monotonic() + self.settings.export_deadline_s)
                self._transport.close()
