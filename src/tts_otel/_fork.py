"""What a forked child must rebuild: locks another thread held at the fork are
never released there, threads do not follow a fork, and a copied random
generator would repeat its parent's sequence. And what worker processes need
to export at all: multiprocessing ends its children with ``os._exit``, so the
SDK's ``atexit`` flush never runs there, and a spawned or forkserver child
inherits none of its parent's set-up."""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from tts_otel._signals import FLUSH_SECONDS, flush_within

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

T = TypeVar("T")

_log = logging.getLogger(__name__)

_resets: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_exit_flushes: weakref.WeakKeyDictionary[Any, Callable[[Any], object]] = weakref.WeakKeyDictionary()

# Set by configure(); a spawned or forkserver child reads it to tell that its parent
# exported and it does not. A pid, so that only the configured process's own
# children are told, not every program started below it.
CONFIGURED_PID: Final = "TTS_OTEL_CONFIGURED_PID"
# multiprocessing runs higher priorities first: flush before its own finalizers
# (queues, managers) are torn down.
_EXIT_PRIORITY: Final = 100


def reset_after_fork(owner: T, reset: Callable[[T], None]) -> None:
    """In a forked child, call ``reset(owner)``, for as long as ``owner`` lives.

    One process-wide hook serves every owner (``os.register_at_fork`` hooks can
    never be removed), and owners are held weakly.
    """
    _resets[owner] = reset


class _Handle(Protocol):
    """What :func:`follow_into_workers` needs of a :class:`~tts_otel.Telemetry`."""

    meter_provider: MeterProvider

    def force_flush(self, timeout_millis: int = ...) -> bool: ...


def follow_into_workers(telemetry: _Handle, owns_providers: bool) -> None:
    """Make ``telemetry`` export from multiprocessing's workers: each flushes at its
    exit; a forked one (where the providers are tts-otel's) drops the parent's
    metric totals; a spawned one that was not configured says so."""
    flush_at_worker_exit(telemetry, _flush)
    if owns_providers:
        forget_parents_metrics(telemetry.meter_provider)


def _flush(telemetry: _Handle) -> None:
    telemetry.force_flush()


def flush_at_worker_exit(owner: T, flush: Callable[[T], object]) -> None:
    """Before a multiprocessing child of this process ends (or this process, if it is
    one), call ``flush(owner)``, bounded by ``FLUSH_SECONDS``: a child must not die
    with its spans queued, nor wait forever on a dead collector."""
    _exit_flushes[owner] = flush
    os.environ[CONFIGURED_PID] = str(os.getpid())
    if _multiprocessing_child():
        _arm_exit_flush()


def forget_parents_metrics(meter_provider: MeterProvider) -> None:
    """In a forked child, start the SDK's metric state afresh: the child is its own
    ``service.instance.id`` (the SDK gives it a new one), and cumulative totals that
    still held the parent's measurements would count those once per child."""
    reset_after_fork(meter_provider, _clear_metric_state)


def warn_if_unconfigured_worker() -> None:
    """Where this process is a spawned or forkserver child of a process that called
    configure() and it has not called configure() itself: say so, once."""
    process = sys.modules.get("multiprocessing.process")
    parent = getattr(process, "parent_process", lambda: None)()
    if parent is None or os.environ.get(CONFIGURED_PID) != str(parent.pid):
        return
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # the child set up providers of its own
    _log.warning(
        "tts-otel: this worker process (pid %d) was started by multiprocessing from process "
        "%d, which called tts_otel.configure(); a spawn or forkserver child does not "
        "inherit that set-up, so it exports nothing. Call tts_otel.configure() in each "
        "worker: Pool(initializer=tts_otel.configure, initargs=(...)) or "
        "ProcessPoolExecutor(initializer=tts_otel.configure, initargs=(...))",
        os.getpid(),
        parent.pid,
    )


def _multiprocessing_child() -> bool:
    process = sys.modules.get("multiprocessing.process")
    return process is not None and process.parent_process() is not None


_armed_in: int | None = None  # the pid whose multiprocessing exit runs _flush_all
_armed_lock = threading.Lock()


def _arm_exit_flush(_owner: object = None) -> None:
    """Register the flush with multiprocessing's exit (``util._exit_function``, which
    its child bootstrap calls before ``os._exit``, and Python's ``atexit`` otherwise)."""
    global _armed_in
    with _armed_lock:
        if _armed_in == os.getpid():
            return
        _armed_in = os.getpid()
    from multiprocessing import util

    util.Finalize(None, _flush_all, exitpriority=_EXIT_PRIORITY)


def _flush_all() -> None:
    owners = list(_exit_flushes.items())
    flush_within(lambda: [flush(owner) for owner, flush in owners], FLUSH_SECONDS, "at worker exit")


class _Marker:
    """What multiprocessing's after-fork registry holds (it holds its keys weakly)."""


_MARKER: Final = _Marker()


def _in_child() -> None:
    for owner, reset in list(_resets.items()):
        reset(owner)
    util = sys.modules.get("multiprocessing.util")
    if _exit_flushes and util is not None:
        # multiprocessing's child bootstrap clears its finalizers after the fork, then
        # runs its after-fork functions: register there. A plain os.fork() child never
        # runs them, and keeps the atexit flush it inherited.
        util.register_after_fork(_MARKER, _arm_exit_flush)


def _clear_metric_state(meter_provider: Any) -> None:
    # Private SDK attributes (1.45); tests/test_fork.py pins them. Where they are
    # missing, the child still exports; its totals then include the parent's.
    try:
        consumer = meter_provider._measurement_consumer
        readers = list(consumer._reader_storages)
        storages = list(consumer._reader_storages.values())
        matches = [
            match
            for storage in storages
            for found in storage._instrument_view_instrument_matches.values()
            for match in found
        ]
    except AttributeError:
        _log.debug("tts-otel: this SDK hides its metric state; a forked child keeps it")
        return
    # Locks too: one a parent thread held at the fork would never be released here.
    consumer._lock = threading.Lock()
    for storage in storages:
        storage._lock = threading.RLock()
    for match in matches:
        match._lock = threading.Lock()
        match._attributes_aggregation = {}
        match._previous_collection_start_nanos = None
    for reader in readers:
        if hasattr(reader, "_export_lock"):  # held by the parent's export at the fork
            reader._export_lock = threading.Lock()


os.register_at_fork(after_in_child=_in_child)
