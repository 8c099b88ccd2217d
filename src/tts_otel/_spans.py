"""Span helpers that requests and stages share: error marking, attributes, context."""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context
from opentelemetry.trace import Link, Span, Status, StatusCode

from tts_otel import semconv
from tts_otel._validation import plain
from tts_otel.telemetry import get_telemetry

# OpenTelemetry's exception event and attribute names.
_EXCEPTION_EVENT = "exception"
_EXCEPTION_TYPE = "exception.type"


def error_type(error: BaseException) -> str:
    """``error.type`` of an exception: its class name, qualified unless a builtin."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def mark_error(span: Span, error: BaseException, *, details: bool) -> str:
    """Mark ``span`` failed by ``error``; returns its ``error.type``.

    A service's exception message often quotes its input (``f"bad text: {text}"``),
    and the stack trace repeats it, so both are recorded only with ``details``
    (``record_text`` set to plain text); otherwise the event holds the type alone.
    """
    kind = error_type(error)
    span.set_attribute(semconv.ATTR_ERROR_TYPE, kind)
    if details:
        span.record_exception(error)
    else:
        span.add_event(_EXCEPTION_EVENT, {_EXCEPTION_TYPE: kind})
    span.set_status(Status(StatusCode.ERROR, kind))
    return kind


def instrumentation_suppressed() -> bool:
    """Whether ``suppress_instrumentation()`` is in force here (an exporter's own calls,
    a user's block). The keys opentelemetry-instrumentation's ``is_instrumentation_enabled``
    reads, read here because importing that module costs 66 ms (it loads wrapt)."""
    return bool(
        context.get_value(_SUPPRESS_INSTRUMENTATION_KEY)
        or context.get_value("suppress_instrumentation")
    )


def set_span_attribute(span: Span, key: object, value: object) -> None:
    """``span.set_attribute``, never raising into the service.

    The SDK drops a value or key of the wrong type with a warning, but a key
    whose ``__bool__``/``__len__``/``__hash__`` raises (a str subclass, say)
    raises out of it; such an attribute is dropped and counted instead.
    """
    try:
        span.set_attribute(plain(key), plain(value))  # type: ignore[arg-type]
    except Exception:
        get_telemetry().values.reject("attribute", key, "not usable as an attribute key")


def restore_context(ours: Context | None, previous: Context) -> None:
    """Make ``previous`` current again if ``ours`` is still current here.

    Not ``context.detach(token)``: a token works only in the Context that
    made it, and services end requests and stages in other ones (a copied
    context, ``asyncio.to_thread``, a streaming generator's ``next()`` in a
    thread pool). Where ``ours`` is not current there is nothing to undo.
    """
    if ours is not None and context.get_current() is ours:
        context.attach(previous)


def live_parent(caller: Context) -> tuple[Context, list[Link]]:
    """The context to start a request in, and its links: ``caller`` unless its span has
    ended (an SDK span with an end time), then a root that links to that span."""
    span = trace.get_current_span(caller)
    if getattr(span, "end_time", None) is None:  # open, remote, non-recording, or none
        return caller, []
    link = Link(span.get_span_context(), {semconv.ATTR_LINK_ENDED_PARENT: True})
    return trace.set_span_in_context(trace.INVALID_SPAN, caller), [link]
