"""Pipeline stages: ``with req.stage("acoustic"):`` and ``@tts_otel.stage("vocoder")``."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from time import perf_counter, time_ns
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._context import current_request, current_segment
from tts_otel.gpu import GpuInterval
from tts_otel.telemetry import get_telemetry

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tts_otel.request import Synthesis

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def error_type(error: BaseException) -> str:
    """``error.type`` of an exception: its class name, qualified unless a builtin."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def mark_error(span: Span, error: BaseException) -> str:
    kind = error_type(error)
    span.set_attribute(semconv.ATTR_ERROR_TYPE, kind)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, kind))
    return kind


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

    __slots__ = ("_context", "_gpu", "_name", "_parent", "_request", "_span", "_start",
                 "_token", "_used_request")  # fmt: skip

    def __init__(
        self, name: str, request: Synthesis | None = None, parent: Stage | None = None
    ) -> None:
        self._name = name
        self._request = request
        self._parent = parent
        self._used_request: Synthesis | None = None
        self._span: Span | None = None
        self._token: object = None
        self._context: Context | None = None
        self._gpu: GpuInterval | None = None
        self._start = 0.0

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        name, request = self._name, self._request
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with Stage(name, request):
                    return await func(*args, **kwargs)

            return run_async

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            with Stage(name, request):
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

    def start(self, *, current: bool = True) -> Stage:
        """Open the span; ``current=False`` leaves the caller's context unchanged."""
        try:
            self._begin(current)
        except Exception:
            _log.exception("tts-otel: could not start stage %s; it runs unmeasured", self._name)
            self._span = None
        return self

    def end(self, error: BaseException | None = None, *, at: float | None = None) -> None:
        """Close the span; ``at``, a ``time.perf_counter()`` reading, ends it then, not now."""
        now = perf_counter()
        span = self._span
        if span is None:
            return
        self._span = None
        finished = now if at is None else at
        try:
            end_ns = time_ns() - round((now - finished) * 1e9)
            self._finish(span, finished - self._start, end_ns, error)
        except Exception:
            _log.exception("tts-otel: could not record stage %s", self._name)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """An attribute on this stage's span (never a metric label)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> Context | None:
        """The context holding this stage's span, for children started elsewhere."""
        return self._context

    def _begin(self, current: bool) -> None:
        active = current_request.get()
        request = self._request or active
        self._used_request = request
        if self._parent is not None and self._parent.context is not None:
            parent = self._parent.context
        elif request is None or active is request:
            parent = context.get_current()
        else:
            # In another thread or task the caller's context may not hold the
            # request: parent the stage on the request itself then.
            parent = request.context
        if request is None:
            tracer = get_telemetry().tracer
            attributes: dict[str, Any] = {semconv.ATTR_STAGE: self._name}
        else:
            tracer = request.telemetry.tracer
            attributes = request.stage_span_attributes(self._name)
        segment = current_segment.get()
        if segment is not None:
            attributes = {**attributes, semconv.ATTR_SEGMENT_INDEX: segment}
        span = tracer.start_span(
            semconv.stage_span_name(self._name), context=parent, attributes=attributes
        )
        self._span = span
        self._context = trace.set_span_in_context(span, parent)
        if current:
            self._token = context.attach(self._context)
        if request is not None and request.gpu is not None:
            self._gpu = request.gpu.begin()
        self._start = perf_counter()

    def _finish(self, span: Span, duration: float, end_ns: int, exc: BaseException | None) -> None:
        if self._token is not None:
            context.detach(cast(Any, self._token))
            self._token = None
        request = self._used_request
        failure = mark_error(span, exc) if exc is not None else None
        if request is None:
            telemetry = get_telemetry()
            attributes = telemetry.guard.bound(
                {semconv.ATTR_STAGE: self._name, semconv.ATTR_ERROR_TYPE: failure}
            )
            span.end(end_ns)
            record = telemetry.instruments.stage_duration.record
            telemetry.buffer.push([(record, duration, attributes, self._context)])
            return
        metric_attributes = request.stage_metric_attributes(self._name, failure)
        if self._gpu is not None and request.gpu is not None:
            request.gpu.end(self._gpu)
        request.stage_finished(
            span, cast(Context, self._context), end_ns, duration, metric_attributes, self._gpu
        )


def stage(name: str) -> Stage:
    """A stage of the current request, as a context manager or a decorator.

    >>> @stage("vocoder")
    ... def vocode(mel): ...
    """
    return Stage(name)
