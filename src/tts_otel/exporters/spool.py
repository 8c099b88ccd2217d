"""Where batches wait while InfluxDB is away: bounded in bytes, replayed oldest first.

In memory by default; in a directory when one is configured, so that what
waits survives a restart of the exporting process. Overflow drops the oldest
batches and counts their points.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Protocol

_log = logging.getLogger(__name__)


class Spool(Protocol):
    dropped_points: int

    def add(self, body: bytes, points: int) -> None: ...

    def oldest(self) -> tuple[bytes, int] | None: ...

    def remove_oldest(self) -> None: ...

    @property
    def points(self) -> int: ...


class MemorySpool:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._items: deque[tuple[bytes, int]] = deque()
        self._bytes = 0
        self._points = 0
        self._lock = threading.Lock()
        self.dropped_points = 0

    def add(self, body: bytes, points: int) -> None:
        with self._lock:
            self._items.append((body, points))
            self._bytes += len(body)
            self._points += points
            while self._bytes > self._max_bytes and self._items:
                old_body, old_points = self._items.popleft()
                self._bytes -= len(old_body)
                self._points -= old_points
                self.dropped_points += old_points

    def oldest(self) -> tuple[bytes, int] | None:
        with self._lock:
            return self._items[0] if self._items else None

    def remove_oldest(self) -> None:
        with self._lock:
            if self._items:
                body, points = self._items.popleft()
                self._bytes -= len(body)
                self._points -= points

    @property
    def points(self) -> int:
        return self._points


class DiskSpool:
    """One file per batch, ``<sequence>-<points>.lp``; written to a temporary name, then renamed."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()
        self._files: deque[Path] = deque(sorted(directory.glob("*.lp")))
        self._bytes = sum(path.stat().st_size for path in self._files)
        self._points = sum(self._count(path) for path in self._files)
        self._next = int(self._files[-1].name.split("-")[0]) + 1 if self._files else 0
        self.dropped_points = 0
        if self._files:
            _log.info(
                "tts-otel: %d spooled InfluxDB batches found in %s", len(self._files), directory
            )

    @staticmethod
    def _count(path: Path) -> int:
        return int(path.stem.split("-")[1])

    def add(self, body: bytes, points: int) -> None:
        with self._lock:
            path = self._directory / f"{self._next:012d}-{points}.lp"
            self._next += 1
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(body)
            os.replace(temporary, path)
            self._files.append(path)
            self._bytes += len(body)
            self._points += points
            while self._bytes > self._max_bytes and self._files:
                oldest = self._files.popleft()
                self._bytes -= oldest.stat().st_size
                self._points -= self._count(oldest)
                self.dropped_points += self._count(oldest)
                oldest.unlink()

    def oldest(self) -> tuple[bytes, int] | None:
        with self._lock:
            if not self._files:
                return None
            path = self._files[0]
            return path.read_bytes(), self._count(path)

    def remove_oldest(self) -> None:
        with self._lock:
            if self._files:
                path = self._files.popleft()
                self._bytes -= path.stat().st_size
                self._points -= self._count(path)
                path.unlink()

    @property
    def points(self) -> int:
        return self._points
