"""Pipeline stages: ``with req.stage("acoustic"):`` and ``@tts_otel.stage("vocoder")``."""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from time import perf_counter, time_ns
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._context import StageOwner, current_owner, current_segment
from tts_otel._spans import (
    instrumentation_suppressed,
    mark_error,
    restore_context,
    set_span_attribute,
)
from tts_otel._validation import describe, plain, valid_text
from tts_otel.gpu.cuda import GpuInterval, RequestGpu
from tts_otel.telemetry import Telemetry, get_telemetry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _reading(at: object, fallback: float | None) -> float | None:
    """``at`` if it is a usable ``perf_counter()`` reading, else ``fallback`` (warned, counted).

    Checked before the span starts or ends: an ``at`` that breaks the arithmetic
    would otherwise leave the stage unmeasured with an ERROR traceback per call,
    or, at the end, the span open and the stage's context attached.
    """
    if isinstance(at, int | float) and not isinstance(at, bool):
        try:
            if math.isfinite(float(at)):
                return float(at)
        except Exception:  # a subclass whose __float__ raises, an int too big for a float
            pass
    get_telemetry().values.reject("at", at, "not a perf_counter() reading")
    return fallback


class _Detached:
    """The owner of stages run outside any request: a span and a duration, without
    request attributes, on whatever handle is active when they run."""

    gpu: RequestGpu | None = None

    @property
    def telemetry(self) -> Telemetry:
        return get_telemetry()

    @property
    def context(self) -> Context:
        return context.get_current()

    @property
    def error_details(self) -> bool:
        return self.telemetry.settings.record_text == "plain"

    def span_attributes(self, stage: str) -> Mapping[str, AttributeValue]:
        return {semconv.ATTR_STAGE: stage}

    def metric_attributes(self, stage: str, failure: str | None) -> Mapping[str, AttributeValue]:
        return self.telemetry.guard.bound(
            {semconv.ATTR_STAGE: stage, semconv.ATTR_ERROR_TYPE: failure}
        )

    def wall_ns(self, at: float) -> int:
        return time_ns() - round((perf_counter() - at) * 1e9)

    def finished(
        self,
        span: Span,
        context: Context,
        end_ns: int,
        duration: float,
        attributes: Mapping[str, AttributeValue],
        gpu: GpuInterval | None,
    ) -> None:
        span.end(end_ns)
        telemetry = self.telemetry
        record = telemetry.instruments.stage_duration.record
        telemetry.buffer.push([(record, duration, attributes, context)])


_DETACHED: StageOwner = _Detached()


class Stage:
    """One run of a pipeline stage: a span, a duration, optionally GPU figures.

    Use one instance per run (``with req.stage(...)`` makes a new one each
    time). As a decorator it starts a fresh run on every call, for plain and
    ``async`` functions alike. Outside any request it still records a span
    and a duration, without request attributes.

    ``start(current=False)`` and ``end(at=...)`` serve integrations whose
    stage spans several calls of the library they instrument: such a stage is
    not made current, its children name it as ``parent``, and it ends at the
    time its last child ended.
    """

    __slots__ = (
        "_context",
        "_gpu",
        "_name",
        "_owner",
        "_parent",
        "_previous",
        "_span",
        "_start",
        "_used",
    )

    def __init__(
        self, name: str, owner: StageOwner | None = None, parent: Stage | None = None
    ) -> None:
        # A str subclass (an enum, or one whose __hash__ raises) as its plain str:
        # the name is hashed and formatted on every run. Made valid UTF-8 here, once.
        self._name = cast(str, plain(name))
        if isinstance(self._name, str) and valid_text(self._name) is not self._name:
            self._name = get_telemetry().values.text(semconv.ATTR_STAGE, self._name)
        self._owner = owner  # None: the request current when the stage starts, if any
        self._parent = parent
        self._used: StageOwner = _DETACHED
        self._span: Span | None = None
        self._previous: Context | None = None
        self._context: Context | None = None
        self._gpu: GpuInterval | None = None
        self._start = 0.0

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        name, owner = self._name, self._owner
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with Stage(name, owner):
                    return await func(*args, **kwargs)

            return run_async

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            with Stage(name, owner):
                return func(*args, **kwargs)

        return run

    def __enter__(self) -> Stage:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc)

    def start(self, *, current: bool = True, at: float | None = None) -> Stage:
        """Open the span; ``current=False`` leaves the caller's context unchanged.

        ``at``, a ``time.perf_counter()`` reading, starts it then, not now: for work
        an integration learns belongs to a request only after it ran (no GPU timing).
        """
        try:
            self._begin(current, None if at is None else _reading(at, None))
        except Exception:
            _log.exception(
                "tts-otel: could not start stage %s; it runs unmeasured", describe(self._name)
            )
            span, self._span = self._span, None
            if span is not None:  # started, then failed: end it rather than leave it open
                self._abandon(span)
        return self

    def end(self, error: BaseException | None = None, *, at: float | None = None) -> None:
        """Close the span; ``at``, a ``time.perf_counter()`` reading, ends it then, not now."""
        now = perf_counter()
        span = self._span
        if span is None:
            return
        self._span = None
        finished = now if at is None else cast(float, _reading(at, now))
        try:
            end_ns = self._used.wall_ns(finished)
            self._finish(span, finished - self._start, end_ns, error)
        except Exception:
            _log.exception("tts-otel: could not record stage %s", describe(self._name))
            # Whatever failed, the span ends and the caller's context is put back:
            # an open span is never exported, an attached one parents what follows.
            self._abandon(span)

    def _abandon(self, span: Span) -> None:
        try:
            if self._previous is not None:
                restore_context(self._context, self._previous)
                self._previous = None
            if getattr(span, "end_time", None) is None:
                span.end()
        except Exception:
            _log.exception("tts-otel: could not end stage %s", describe(self._name))

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """An attribute on this stage's span (never a metric label)."""
        if self._span is not None:
            set_span_attribute(self._span, key, value)

    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> Context | None:
        """The context holding this stage's span, for children started elsewhere."""
        return self._context

    def _begin(self, current: bool, at: float | None) -> None:
        if not isinstance(self._name, str):
            get_telemetry().values.reject(semconv.ATTR_STAGE, self._name, "not a str")
            return
        if instrumentation_suppressed():  # suppress_instrumentation(): unmeasured
            return
        active = current_owner.get()
        owner = self._owner or active or _DETACHED
        self._used = owner
        if self._parent is not None and self._parent.context is not None:
            parent = self._parent.context
        elif owner is active or owner is _DETACHED:
            parent = context.get_current()
        else:
            # In another thread or task the caller's context may not hold the
            # request: parent the stage on the request itself then.
            parent = owner.context
        attributes = owner.span_attributes(self._name)
        segment = current_segment.get()
        if segment is not None:
            attributes = {**attributes, semconv.ATTR_SEGMENT_INDEX: segment}
        now = perf_counter()
        # Start and end on the owner's one clock pairing, as the request's own span is:
        # a child then never ends after its parent by the drift between two conversions.
        span = owner.telemetry.tracer.start_span(
            semconv.stage_span_name(self._name),
            context=parent,
            attributes=attributes,
            start_time=owner.wall_ns(now if at is None else at),
        )
        self._span = span
        self._context = trace.set_span_in_context(span, parent)
        if current:
            self._previous = context.get_current()
            context.attach(self._context)
        gpu = owner.gpu
        if gpu is not None and at is None:
            self._gpu = gpu.begin()
        self._start = now if at is None else at

    def _finish(self, span: Span, duration: float, end_ns: int, exc: BaseException | None) -> None:
        if self._previous is not None:
            restore_context(self._context, self._previous)
            self._previous = None
        owner = self._used
        failure = mark_error(span, exc, details=owner.error_details) if exc is not None else None
        attributes = owner.metric_attributes(self._name, failure)
        gpu = owner.gpu
        if self._gpu is not None and gpu is not None:
            gpu.end(self._gpu)
        owner.finished(span, cast(Context, self._context), end_ns, duration, attributes, self._gpu)


def stage(name: str) -> Stage:
    """A stage of the current request, as a context manager or a decorator.

    >>> @stage("vocoder")
    ... def vocode(mel): ...
    """
    return Stage(name)
