"""The handle that ties tts-otel to a tracer and meter provider."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.trace import TracerProvider

from tts_otel import semconv
from tts_otel._cardinality import AttributeGuard
from tts_otel._instruments import Instruments
from tts_otel._metric_buffer import DirectRecorder, MetricBuffer
from tts_otel._observers import observe
from tts_otel._signals import SignalFlush
from tts_otel._validation import ValueChecker
from tts_otel.gpu.cuda import CudaRuntime, load_cuda_runtime
from tts_otel.gpu.nvml import NvmlReader, NvmlSampler, start_nvml_sampler
from tts_otel.ids import protect_ids
from tts_otel.version import __version__

if TYPE_CHECKING:
    from tts_otel.config import Settings

_log = logging.getLogger(__name__)


class _Report:
    """What one handle shows every collection (:class:`tts_otel._observers.Observed`)."""

    def __init__(
        self,
        buffer: MetricBuffer | DirectRecorder,
        values: ValueChecker,
        dropped_spans: Sequence[Callable[[], int]],
        health: Sequence[tuple[str, Callable[[], Iterable[tuple[str, int]]]]],
    ) -> None:
        self._buffer, self._values = buffer, values
        self._dropped_spans, self._health = dropped_spans, health

    def record_buffered(self) -> int:
        return self._buffer.drain()

    def dropped(self) -> Iterable[tuple[str, int]]:
        yield ("metrics", self._buffer.dropped)
        yield ("invalid_value", self._values.dropped)
        yield ("cut", self._values.cut)
        if self._dropped_spans:
            yield ("spans", sum(count() for count in self._dropped_spans))

    def health(self) -> Iterable[tuple[str, Iterable[tuple[str, int]]]]:
        return [(name, report()) for name, report in self._health]


class Telemetry:
    """Tracer, instruments and guards for one set of providers.

    Returned by :func:`tts_otel.configure`; ``force_flush()`` and
    ``shutdown()`` act on the providers, but ``shutdown()`` only shuts down
    providers that tts-otel created itself. As a context manager
    (``with tts_otel.configure(...):``) it shuts down when the block ends.
    """

    def __init__(
        self,
        settings: Settings,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        *,
        owns_providers: bool,
        cuda: CudaRuntime | Literal["auto"] | None = "auto",
        nvml_reader: NvmlReader | None = None,
        destinations: Sequence[str] = (),
        closers: Sequence[Callable[[], None]] = (),
        health: Sequence[tuple[str, Callable[[], Iterable[tuple[str, int]]]]] = (),
        dropped_spans: Sequence[Callable[[], int]] = (),
        flush_on_signals: bool = False,
    ) -> None:
        self.settings = settings
        self.destinations = tuple(destinations)  # where the exporters send data, for people
        self._closers = tuple(closers)
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._owns_providers = owns_providers
        self._shutdown = False
        protect_ids(tracer_provider)
        self.tracer = tracer_provider.get_tracer(semconv.INSTRUMENTATION_SCOPE, __version__)
        meter = meter_provider.get_meter(semconv.INSTRUMENTATION_SCOPE, __version__)
        self.values = ValueChecker()
        self.guard = AttributeGuard(settings.max_attribute_values, self.values)
        # Deferring records only pays off when a reader will collect them; a no-op
        # provider never collects, so record at once (each record is then a no-op).
        self.buffer: MetricBuffer | DirectRecorder = (
            MetricBuffer(settings.metric_buffer_size)
            if isinstance(meter_provider, SdkMeterProvider)
            else DirectRecorder()
        )
        self.instruments = Instruments.create(meter)
        self._report = _Report(self.buffer, self.values, tuple(dropped_spans), tuple(health))
        observe(meter, self._report)
        wants_cuda = settings.gpu_memory or settings.timing == "cuda_events"
        if isinstance(cuda, str):  # "auto": torch (slow to import) only for a setting using it
            cuda = load_cuda_runtime() if wants_cuda else None
        self.cuda: CudaRuntime | None = cuda
        self.cuda_events = settings.timing == "cuda_events" and self.cuda is not None
        if settings.timing == "cuda_events" and self.cuda is None:
            _log.warning("tts-otel: timing='cuda_events' needs torch with CUDA; using wall time")
        self.nvml: NvmlSampler | None = (
            start_nvml_sampler(meter, nvml_reader) if settings.nvml else None
        )
        self._signals = SignalFlush(self.force_flush) if flush_on_signals else None
        if self._signals is not None:
            self._signals.install()

    def exporter_health(self) -> dict[str, dict[str, int]]:
        """Points each exporter sent and dropped, and what its spool holds now against its
        bound: ``{"influxdb": {"sent": ..., "dropped": ..., "spooled": ..., "spool_bytes": ...,
        "spool_limit_bytes": ...}}``."""
        return {name: dict(report) for name, report in self._report.health()}

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything recorded so far; returns ``False`` if a provider timed out, or
        an exporter's spool still holds points its backend has not taken."""
        self.buffer.drain()
        ok = True
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is None:
                continue
            try:
                ok = bool(flush(timeout_millis)) and ok
            except Exception:
                # A bad timeout or a reader that fails its collection: say so, never raise.
                _log.exception("tts-otel: %s.force_flush failed", type(provider).__name__)
                ok = False
        # The SDK's flush says the exporter was called, not that the backend took the data.
        return ok and not any(dict(report).get("spooled") for _, report in self._report.health())

    def shutdown(self) -> None:
        """Flush, then shut down the providers tts-otel created. Safe to call twice."""
        if self._shutdown:
            return
        self._shutdown = True
        if self._signals is not None:
            self._signals.uninstall()
        self.buffer.close()
        self.force_flush()
        stops = [getattr(p, "shutdown", None) for p in (self.tracer_provider, self.meter_provider)]
        for stop in [*(stops if self._owns_providers else []), *self._closers]:
            try:
                if stop is not None:
                    stop()
            except Exception:
                _log.exception("tts-otel: shutting down %r failed", stop)
        global _active
        with _active_lock:
            if _active is self:
                _active = None

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


_active: Telemetry | None = None
_active_lock = threading.Lock()


def get_telemetry() -> Telemetry:
    """The active handle; without :func:`configure`, one on the global providers.

    Settings are then read here, on the first request, so a bad variable is
    logged once and its default used: a request never fails for telemetry.
    """
    global _active
    active = _active
    if active is not None:
        return active
    with _active_lock:
        if _active is None:
            # Here, not at import: the settings table is the slowest part of importing
            # tts_otel, and a service that calls configure() reads it there.
            from tts_otel._fork import warn_if_unconfigured_worker
            from tts_otel.config import load_settings

            warn_if_unconfigured_worker()
            _active = Telemetry(
                load_settings(exporters=(), lenient=True),
                trace.get_tracer_provider(),
                metrics.get_meter_provider(),
                owns_providers=False,
            )
        return _active


def set_telemetry(telemetry: Telemetry | None) -> None:
    """Make ``telemetry`` the handle new requests use (``None``: back to the global providers)."""
    global _active
    with _active_lock:
        _active = telemetry
