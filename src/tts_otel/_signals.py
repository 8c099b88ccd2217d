"""Flush telemetry when the process is told to stop (SIGTERM, SIGINT).

Servers such as uvicorn re-raise SIGTERM after their graceful shutdown, so
the process dies by the signal and the SDK's ``atexit`` flush never runs:
the spans of the last seconds and up to a whole metric interval were lost.
A handler here flushes first and then does exactly what was there before:
it calls the previous Python handler, or, where the action was the default,
restores it and raises the signal again, so the exit status is unchanged.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Final

_log = logging.getLogger(__name__)

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
# A flush waits on exporters; a hung one must not keep a stopping process alive
# until its supervisor kills it, so the flush gets this long and no more.
FLUSH_SECONDS: Final = 5.0

_Handler = Callable[[int, FrameType | None], object] | int | None


class SignalFlush:
    """Installs (from the main thread only) a chained flush on SIGTERM and SIGINT."""

    def __init__(self, flush: Callable[[], object], seconds: float = FLUSH_SECONDS) -> None:
        self._flush = flush
        self._seconds = seconds
        self._previous: dict[int, _Handler] = {}
        self._handler = self._handle  # one bound method, so `is` finds it again

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            _log.info("tts-otel: configure() ran outside the main thread; no flush on signals")
            return
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            # Ignored (nohup) or set from C code: leave the process's choice alone.
            if previous is signal.SIG_IGN or previous is None:
                continue
            signal.signal(signum, self._handler)
            self._previous[signum] = previous

    def uninstall(self) -> None:
        """Put back the previous handlers where ours is still the one installed."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) is self._handler:
                signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        flush_within(self._flush, self._seconds, "on signal")
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
            return
        # The default action: die by this signal, as the process would have without us.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def flush_within(flush: Callable[[], object], seconds: float, when: str) -> bool:
    """Run ``flush``, waiting ``seconds`` at most; ``False`` if it did not finish.

    On its own thread: the caller (a signal handler, a process's exit) may hold a lock
    the flush needs, and a hung exporter must not keep a stopping process alive.
    """
    worker = threading.Thread(
        target=_flush_quietly, args=(flush, when), name="tts-otel-flush", daemon=True
    )
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _log.warning("tts-otel: flush %s took over %.0f s; stopping anyway", when, seconds)
        return False
    return True


def _flush_quietly(flush: Callable[[], object], when: str) -> None:
    try:
        flush()
    except Exception:  # a failing exporter must not turn a stop into a traceback
        _log.exception("tts-otel: flush %s failed", when)
