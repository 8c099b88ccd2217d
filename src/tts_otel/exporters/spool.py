"""Where batches wait while the backend is away: bounded in bytes, replayed oldest first.

A batch (of the InfluxDB or the OTLP writer) is opaque bytes and its number of
points. In memory by default, counted as dropped if still held at shutdown; in
a directory when one is configured, so that it survives a restart of the
process. Overflow drops the oldest batches, counted. One writer uses a spool,
under its lock.

Several writers may share one directory: the span and metric exporters of a
process, and every worker of a service configured alike. So each writer names
its files uniquely (time, sequence, pid, a random token), and a batch is
claimed for replay with an exclusive ``flock`` held until it is sent and
removed: each arrives once, whoever wrote it and whoever replays it, and a
claim dies with its process. A disk that refuses writes (full, read-only)
costs the batch, counted, and one log line; no fragment is left behind.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tts_otel.errors import ConfigurationError

_log = logging.getLogger(__name__)

Send = Callable[[bytes, int], bool]
"""Offered one batch (body, points); ``True`` when it is delivered or finally refused."""

# <time_ns>-<sequence>-<pid>-<token>-<points><suffix>; files of earlier versions,
# <sequence>-<points>.lp, match too and sort first. The suffix keeps each writer's
# batches apart when two kinds share a directory (.lp InfluxDB, .otlp OTLP).
_BATCH = r"^\d+(?:-[0-9a-z]+)*-(\d+)"
_FRAGMENT = ".tmp"


class Spool(Protocol):
    dropped_points: int

    def add(self, body: bytes, points: int) -> None: ...

    def replay(self, send: Send) -> bool:
        """Offer batches oldest first, removing those sent; ``False`` at the first refused."""
        ...

    def held(self) -> tuple[int, int]:
        """(points, bytes) waiting now: bytes count against the bound."""
        ...

    def discard(self) -> int:
        """At shutdown: count what would vanish with the process as dropped; how many points."""
        ...


class MemorySpool:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._items: deque[tuple[bytes, int]] = deque()
        self._bytes = 0
        self._points = 0
        self.dropped_points = 0

    def add(self, body: bytes, points: int) -> None:
        self._items.append((body, points))
        self._bytes += len(body)
        self._points += points
        while self._bytes > self._max_bytes and self._items:
            self.dropped_points += self._pop()

    def _pop(self) -> int:
        body, points = self._items.popleft()
        self._bytes -= len(body)
        self._points -= points
        return points

    def replay(self, send: Send) -> bool:
        while self._items:
            if not send(*self._items[0]):
                return False
            self._pop()
        return True

    def held(self) -> tuple[int, int]:
        return self._points, self._bytes

    def discard(self) -> int:
        """Empty the spool, counting its points as dropped: it ends with the process."""
        discarded = self._points
        self.dropped_points += discarded
        self._items.clear()
        self._bytes = self._points = 0
        return discarded


class DiskSpool:
    """One file per batch in a directory other writers may share (see the module's notes)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        suffix: str = ".lp",
        setting: str = "TTS_OTEL_INFLUXDB_SPOOL_DIR",
        backend: str = "InfluxDB",
    ) -> None:
        """``suffix`` names this writer's kind of batch; ``setting`` and ``backend`` are
        for messages (the variable that named the directory, and where batches go)."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                setting,
                f"cannot create {str(directory)!r} ({error.strerror})",
                "name a directory this process may create",
            ) from None
        self._directory = directory
        self._suffix = suffix
        self._backend = backend
        self._batch = re.compile(_BATCH + re.escape(suffix) + "$")
        self._max_bytes = max_bytes
        self._token = uuid.uuid4().hex[:12]
        self._sequence = itertools.count()
        self._stuck: set[str] = set()  # sent, but the file could not be removed
        self._failing = False  # the directory refuses writes: logged once until it takes one
        self.dropped_points = 0
        self._remove_dead_fragments()
        waiting = self._batches()
        if waiting:
            _log.info(
                "tts-otel: %d spooled %s batches found in %s", len(waiting), backend, directory
            )

    def _points(self, name: str) -> int:
        found = self._batch.match(name)
        return int(found[1]) if found else 0

    def _batches(self) -> list[str]:
        """Names of the waiting batches, oldest first."""
        try:
            names = os.listdir(self._directory)
        except OSError:
            return []
        return sorted(n for n in names if self._batch.match(n) and n not in self._stuck)

    def _remove_dead_fragments(self) -> None:
        """Remove half-written files of writers that died: a live writer holds a lock on its own."""
        try:
            names = os.listdir(self._directory)
        except OSError:
            return
        for name in names:
            if name.endswith(_FRAGMENT):
                claimed = self._claim(name)
                if claimed is not None:
                    self._unlink(name)
                    os.close(claimed[0])

    def add(self, body: bytes, points: int) -> None:
        name = (
            f"{time.time_ns():020d}-{next(self._sequence):08d}-{os.getpid()}-{self._token}"
            f"-{points}{self._suffix}"
        )
        fragment = self._directory / (name + _FRAGMENT)
        try:
            descriptor = self._new_fragment(fragment)
        except OSError as error:
            self._refused(points, error)
            return
        try:
            with open(descriptor, "wb", closefd=False) as output:
                output.write(body)
            os.replace(fragment, self._directory / name)
        except OSError as error:
            self._unlink(fragment.name)
            self._refused(points, error)
            return
        finally:
            os.close(descriptor)
        if self._failing:
            self._failing = False
            _log.info("tts-otel: the spool directory %s takes batches again", self._directory)
        self._bound()

    def _new_fragment(self, fragment: Path) -> int:
        """A new file at ``fragment``, open and locked, so that no starting writer removes it.
        One may have removed it between the open and the lock, taking it for a dead
        writer's (one batch in three was lost so when three processes started at once):
        then it is made again."""
        for _ in range(3):
            descriptor = os.open(fragment, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                if os.fstat(descriptor).st_nlink:
                    return descriptor
            except OSError:
                self._unlink(fragment.name)
                os.close(descriptor)
                raise
            os.close(descriptor)
        raise FileNotFoundError(errno.ENOENT, "removed as soon as it was made", str(fragment))

    def _refused(self, points: int, error: OSError) -> None:
        self.dropped_points += points
        if not self._failing:
            self._failing = True
            _log.error(
                "tts-otel: the spool directory %s refuses batches (%s): batches %s "
                "cannot take now are dropped and counted until it takes them",
                self._directory,
                error.strerror or error,
                self._backend,
            )

    def _sizes(self) -> list[tuple[str, int]]:
        """Each batch of the whole directory, oldest first, with its size in bytes."""
        sizes = []
        for name in self._batches():
            try:
                sizes.append((name, (self._directory / name).stat().st_size))
            except OSError:
                continue  # replayed by another writer meanwhile
        return sizes

    def _bound(self) -> None:
        """Drop the oldest batches of the whole directory until it fits the bound."""
        sizes = self._sizes()
        total = sum(size for _, size in sizes)
        for name, size in sizes:
            if total <= self._max_bytes:
                return
            claimed = self._claim(name)
            if claimed is not None:
                self._remove(name)
                os.close(claimed[0])
                self.dropped_points += self._points(name)
                total -= size

    def _claim(self, name: str) -> tuple[int, bytes] | None:
        """An open, exclusively locked descriptor and the file's bytes; ``None`` if another
        writer holds it or it is gone (the caller closes the descriptor)."""
        try:
            descriptor = os.open(self._directory / name, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Unlinked by the writer that held the lock before us: already delivered.
            if os.fstat(descriptor).st_nlink == 0:
                raise FileNotFoundError(name)
            with open(descriptor, "rb", closefd=False) as source:
                return descriptor, source.read()
        except OSError:
            os.close(descriptor)
            return None

    def replay(self, send: Send) -> bool:
        for name in self._batches():
            claimed = self._claim(name)
            if claimed is None:
                continue
            descriptor, body = claimed
            try:
                if not send(body, self._points(name)):
                    return False
                self._remove(name)
            finally:
                os.close(descriptor)
        return True

    def _remove(self, name: str) -> None:
        if not self._unlink(name):
            # Replayed again it would be stored twice: this writer skips it from now on.
            if not self._stuck:
                _log.error(
                    "tts-otel: cannot remove %s from the spool directory %s; remove it by "
                    "hand, it was delivered",
                    name,
                    self._directory,
                )
            self._stuck.add(name)

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(self._directory / name)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def held(self) -> tuple[int, int]:
        """What the whole directory holds, as :meth:`_bound` counts it against the bound."""
        sizes = self._sizes()
        return sum(self._points(name) for name, _ in sizes), sum(size for _, size in sizes)

    def discard(self) -> int:
        return 0  # the batches stay on disk for the next process
