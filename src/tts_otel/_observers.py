"""What a collection reads from tts-otel: the metric buffer first, then the drop counts and
the exporters' health, through observable instruments registered once per meter.

An observable callback is the one hook the SDK gives into a collection. It runs the
callbacks in the order they were registered, all before it reads the synchronous
instruments (``MeasurementConsumer.collect``). So the buffer's callback comes first: the
collection sees every request that finished before it, and a measurement the SDK
refuses while the buffer is recorded is in that same collection's drop count.

The SDK keeps the first callback registered under a name on a meter and ignores later
ones. A second handle on the same meter provider (``configure()`` twice) therefore
joins the first one's observers, which read every handle on the meter.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from tts_otel import semconv

# An exporter's health report (ExporterParts.health): points sent and dropped only grow,
# a counter by outcome. What the spool holds rises and falls: a monotonic counter would
# turn each drain into a reset and rate() into nonsense, so those are gauges.
_COUNTED = ("sent", "dropped")
_SPOOL_LEVELS: dict[str, tuple[str, str, str]] = {
    "spooled": (
        semconv.METRIC_EXPORTER_SPOOL_POINTS,
        semconv.UNIT_POINTS,
        "Points waiting in the exporter's spool for the backend.",
    ),
    "spool_bytes": (
        semconv.METRIC_EXPORTER_SPOOL_USAGE,
        semconv.UNIT_BYTES,
        "Bytes the exporter's spool holds; past its limit the oldest are dropped.",
    ),
    "spool_limit_bytes": (
        semconv.METRIC_EXPORTER_SPOOL_LIMIT,
        semconv.UNIT_BYTES,
        "The bound on the bytes of the exporter's spool.",
    ),
}

Callback = Callable[[CallbackOptions], Iterable[Observation]]


class Observed(Protocol):
    """What a tts-otel handle shows a collection."""

    def record_buffered(self) -> int:
        """Record the measurements waiting to be recorded; how many there were."""

    def dropped(self) -> Iterable[tuple[str, int]]:
        """``(signal, count)``: what tts-otel dropped, by signal (exporters report theirs
        in :meth:`health`)."""

    def health(self) -> Iterable[tuple[str, Iterable[tuple[str, int]]]]:
        """``(exporter, ((key, value), ...))``: each exporter's health report."""


class _MeterObservers:
    def __init__(self, meter: Meter) -> None:
        # Weak: a handle that is gone no longer reports (the SDK holds these callbacks
        # for the meter provider's life, and must not keep every handle alive with them).
        self._handles: weakref.WeakSet[Observed] = weakref.WeakSet()
        # Every exporter's health report, read once per collection by its first callback:
        # a disk spool's report lists its folder, and each callback reading it was a scan.
        self._reports: list[tuple[str, dict[str, int]]] = []
        meter.create_observable_gauge(
            semconv.METRIC_TELEMETRY_BUFFERED,
            callbacks=[self._record_buffered],
            unit=semconv.UNIT_POINTS,
            description="Measurements a collection found waiting to be recorded into the SDK.",
        )
        meter.create_observable_counter(
            semconv.METRIC_TELEMETRY_DROPPED,
            callbacks=[self._dropped],
            unit=semconv.UNIT_POINTS,
            description="Telemetry items tts-otel dropped (buffer overflow, invalid values).",
        )
        meter.create_observable_counter(
            semconv.METRIC_EXPORTER_POINTS,
            callbacks=[self._exported],
            unit=semconv.UNIT_POINTS,
            description="Points an exporter sent or dropped.",
        )
        for key, (name, unit, description) in _SPOOL_LEVELS.items():
            meter.create_observable_gauge(
                name, callbacks=[self._spool_level(key)], unit=unit, description=description
            )

    def add(self, handle: Observed) -> None:
        self._handles.add(handle)

    def _record_buffered(self, _options: CallbackOptions) -> Iterable[Observation]:
        handles = list(self._handles)
        recorded = sum(handle.record_buffered() for handle in handles)
        self._reports = [(name, dict(report)) for h in handles for name, report in h.health()]
        return [Observation(recorded)]

    def _dropped(self, _options: CallbackOptions) -> Iterable[Observation]:
        totals: Counter[str] = Counter()
        for handle in list(self._handles):
            for signal, count in handle.dropped():
                totals[signal] += count
        if self._reports:
            totals["export"] += sum(report.get("dropped", 0) for _, report in self._reports)
        return [Observation(n, {semconv.ATTR_TELEMETRY_SIGNAL: s}) for s, n in totals.items()]

    def _health(self, keys: Iterable[str]) -> Counter[tuple[str, str]]:
        wanted, totals = set(keys), Counter[tuple[str, str]]()
        for exporter, report in self._reports:
            for key, value in report.items():
                if key in wanted:
                    totals[exporter, key] += value
        return totals

    def _exported(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {semconv.ATTR_EXPORTER: exporter, semconv.ATTR_EXPORTER_OUTCOME: key})
            for (exporter, key), n in self._health(_COUNTED).items()
        ]

    def _spool_level(self, key: str) -> Callback:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            totals = self._health([key])
            return [Observation(n, {semconv.ATTR_EXPORTER: e}) for (e, _), n in totals.items()]

        return observe


_by_meter: weakref.WeakKeyDictionary[Meter, _MeterObservers] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def observe(meter: Meter, handle: Observed) -> None:
    """Show ``handle`` to every collection of ``meter``'s provider."""
    with _lock:
        observers = _by_meter.get(meter)
        if observers is None:
            observers = _by_meter[meter] = _MeterObservers(meter)
        observers.add(handle)
