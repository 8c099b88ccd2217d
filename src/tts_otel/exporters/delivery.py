"""Delivery that the InfluxDB and OTLP writers share: batches sent in order, retried,
paused, spooled, and every point counted.

Each export is one bounded, synchronous write on the SDK's own thread, never
on the request path. A retryable answer (429, 5xx, gRPC UNAVAILABLE...) is
retried with exponential backoff and jitter, honouring ``Retry-After``, within
one deadline per export. What still fails goes to a bounded spool
(:mod:`tts_otel.exporters.spool`) and is replayed in order once the backend
answers. After such a failure the writer stops calling the backend for a
growing, jittered pause (up to ``BACKOFF_MAX_S``): exports in it go straight
to the spool, so a dead backend costs each export microseconds, not a timeout.
A connection error (refused, reset, timed out) skips the retries inside the
export and starts that pause at once: the backoff for an absent backend runs
across exports. Retrying it inside the export blocked the SDK's thread for
the whole deadline, and at 450 spans/s its 2048-span queue overflowed behind
it, dropping spans before they could reach the spool.
Shutdown makes one last attempt to deliver the spool; what a memory spool
still holds then is counted as dropped, since it ends with the process. A
permanent refusal is logged once per cause, with the backend's message, and
its points are counted as dropped.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Protocol

from tts_otel._fork import reset_after_fork
from tts_otel.exporters.spool import DiskSpool, MemorySpool, Spool


class RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnreachableError(RetryableError):
    """No answer at all: nothing listens, or nothing answers in time."""


class PermanentError(Exception):
    pass


class PartialWriteError(PermanentError):
    """The backend stored the batch but for ``dropped`` of its points (message: the backend's)."""

    def __init__(self, message: str, dropped: int) -> None:
        super().__init__(message)
        self.dropped = dropped


class Transport(Protocol):
    def write(self, body: bytes) -> None:
        """Send one batch; raise RetryableError or PermanentError."""
        ...

    def close(self) -> None: ...


class Outcome(enum.Enum):
    """What became of one batch offered to the backend."""

    SENT = "sent"  # stored: all of it, or all a partial write kept (the rest counted as dropped)
    DROPPED = "dropped"  # refused for good: counted as dropped, never offered again
    RETRY = "retry"  # the backend could not take it now: keep it for later


class SpoolSettings(Protocol):
    """What a writer needs from its exporter's settings."""

    @property
    def spool_dir(self) -> Path | None: ...
    @property
    def spool_bytes(self) -> int: ...


class SpoolingWriter:
    """Sends batches in order; spools what cannot be sent; counts everything. Never raises.

    ``backend`` and ``target`` name where batches go, for logs (no credentials);
    ``spool_suffix`` and ``spool_setting`` name this writer's batch files and the
    variable that named their directory."""

    BACKOFF_BASE_S: Final = 0.25
    BACKOFF_MAX_S: Final = 5.0

    def __init__(
        self,
        transport: Transport,
        spool: SpoolSettings,
        export_deadline_s: float,
        *,
        backend: str,
        target: str,
        spool_suffix: str,
        spool_setting: str,
    ) -> None:
        self._transport = transport
        self._spool_bytes = spool.spool_bytes
        self._export_deadline_s = export_deadline_s
        self._backend, self._target = backend, target
        self.spool: Spool = (
            DiskSpool(
                spool.spool_dir,
                spool.spool_bytes,
                suffix=spool_suffix,
                setting=spool_setting,
                backend=backend,
            )
            if spool.spool_dir is not None
            else MemorySpool(spool.spool_bytes)
        )
        self._log = logging.getLogger(type(self).__module__)  # the backend's own logger
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._outage_logged: set[str] = set()  # cleared when the backend answers again
        self._refusals_logged: set[str] = set()  # once per cause for the writer's life
        self.sent_points = 0
        self.rejected_points = 0
        self._closed = False
        self._pauses = 0  # consecutive exports that found the backend unreachable
        self._pause_until = 0.0
        # A child forked while an export held the lock would wait for it forever.
        reset_after_fork(self, SpoolingWriter._after_fork)

    def _after_fork(self) -> None:
        self._lock, self._stop = threading.Lock(), threading.Event()
        self.sent_points = self.rejected_points = 0  # the parent's, reported by the parent
        self.spool.dropped_points = 0
        if isinstance(self.spool, MemorySpool):
            # The parent still holds and delivers these batches; sent twice they would count twice.
            self.spool = MemorySpool(self._spool_bytes)

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
            ("spool_limit_bytes", self._spool_bytes),
        )

    def refuse(self, points: int, cause: str) -> None:
        """Count ``points`` that cannot be stored (logged once per cause)."""
        self.rejected_points += points
        self._log_refusal(cause, cause)

    def deliver(self, body: bytes, points: int) -> bool:
        """Send ``body`` after anything spooled; ``False`` when it was spooled or dropped."""
        with self._lock:
            if self._closed or time.monotonic() < self._pause_until:
                self.spool.add(body, points)
                if self._closed:
                    self.spool.discard()  # after the last replay: a memory spool counts it
                return False
            deadline = time.monotonic() + self._export_deadline_s
            replayed = self._replay(deadline)
            outcome = self._send(body, points, deadline) if replayed else Outcome.RETRY
            if outcome is Outcome.RETRY:
                self.spool.add(body, points)
                self._pause()
                return False
            self._pauses = 0
            return outcome is Outcome.SENT

    def _replay(self, deadline: float) -> bool:
        """Send spooled batches, oldest first; ``False`` if the backend still cannot take them."""
        return self.spool.replay(
            lambda body, points: self._send(body, points, deadline) is not Outcome.RETRY
        )

    def _pause(self) -> None:
        """Leave the backend alone for a while after an export found it unreachable."""
        self._pauses += 1
        longest = min(self.BACKOFF_MAX_S, self.BACKOFF_BASE_S * 2**self._pauses)
        self._pause_until = time.monotonic() + random.uniform(longest / 2, longest)

    def _send(self, body: bytes, points: int, deadline: float) -> Outcome:
        attempt = 0
        while True:
            try:
                self._transport.write(body)
            except PartialWriteError as error:
                dropped = min(points, self._partially_dropped(error, points))
                self.sent_points += points - dropped
                self.rejected_points += dropped
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
                self._log.info(
                    "tts-otel: %s at %s accepts writes again", self._backend, self._target
                )
                self._outage_logged.clear()
            return Outcome.SENT

    def _partially_dropped(self, error: PartialWriteError, points: int) -> int:
        """How many of ``points`` a partial write dropped (logged once per cause)."""
        self._log_refusal(
            "partial write",
            f"partial write, the other points are stored: {str(error).strip()[:300]}",
        )
        return error.dropped

    def _log_refusal(self, cause: str, message: str) -> None:
        self._log_once(self._refusals_logged, cause, message)

    def _log_outage(self, message: str) -> None:
        self._log_once(self._outage_logged, message.split(":")[0], message)

    def _log_once(self, logged: set[str], cause: str, message: str) -> None:
        if cause not in logged:
            logged.add(cause)
            self._log.warning(
                "tts-otel: %s write to %s failed: %s", self._backend, self._target, message
            )

    def close(self) -> None:
        """Interrupt waits, try once more to deliver the spool, release the connection.

        What still cannot be sent stays spooled on disk if a directory is configured;
        a memory spool ends here, and what it holds is counted as dropped. Each batch
        gets one attempt, so a dead backend delays this by one timeout.
        """
        self._stop.set()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._replay(time.monotonic() + self._export_deadline_s)
                discarded = self.spool.discard()
                if discarded:
                    self._log.warning(
                        "tts-otel: %d points %s at %s did not take are dropped at shutdown "
                        "(counted); a spool directory keeps them for the next start",
                        discarded,
                        self._backend,
                        self._target,
                    )
                self._transport.close()
