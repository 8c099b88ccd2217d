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
    """

    __slots__ = ("_context", "_gpu", "_name", "_request", "_span", "_start", "_token",
                 "_used_request")  # fmt: skip

    def __init__(self, name: str, request: Synthesis | None = None) -> None:
        self._name = name
        self._request = request
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
        try:
            self._begin()
        except Exception:
            _log.exception("tts-otel: could not start stage %s; it runs unmeasured", self._name)
            self._span = None
        return self

    def _begin(self) -> None:
        active = current_request.get()
        request = self._request or active
        self._used_request = request
        if request is None:
            tracer = get_telemetry().tracer
            parent = context.get_current()
            attributes: dict[str, Any] = {semconv.ATTR_STAGE: self._name}
        else:
            tracer = request.telemetry.tracer
            # In another thread or task the caller's context may not hold the
            # request: parent the stage on the request itself then.
            parent = context.get_current() if active is request else request.context
            attributes = request.stage_span_attributes(self._name)
        segment = current_segment.get()
        if segment is not None:
            attributes = {**attributes, semconv.ATTR_SEGMENT_INDEX: segment}
        span = tracer.start_span(
            semconv.stage_span_name(self._name), context=parent, attributes=attributes
        )
        self._span = span
        self._context = trace.set_span_in_context(span, parent)
        self._token = context.attach(self._context)
        if request is not None and request.gpu is not None:
            self._gpu = request.gpu.begin()
        self._start = perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = perf_counter() - self._start
        span = self._span
        if span is None:
            return
        try:
            self._finish(span, duration, exc)
        except Exception:
            _log.exception("tts-otel: could not record stage %s", self._name)

    def _finish(self, span: Span, duration: float, exc: BaseException | None) -> None:
        end_ns = time_ns()
        context.detach(cast(Any, self._token))
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
