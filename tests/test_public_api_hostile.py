"""The whole public API fed hostile values in random sequences (Hypothesis).

What a service may do to tts-otel, on purpose or by mistake: pass ``None``,
NaN, infinities, ``2**63``, surrogates, bytes, containers, or objects whose
``__str__``/``__hash__``/``__eq__``/``__bool__``/``__len__``/``__float__``
raise, to every call and keyword; open stages and never close them, close
them twice or in another context (a copied context, a thread, ``to_thread``);
nest and interleave requests; raise its own exceptions anywhere.

What must hold whatever it does:
- nothing raises into the caller except the caller's own exceptions, which
  arrive unchanged (the same object);
- after each top-level request, ``tts_otel.current()`` is ``None`` and no span
  is current: nothing stays attached to the caller's context;
- every request span, and every stage span whose ``end()`` or ``with`` block
  ran, has ended;
- ``Telemetry.force_flush()`` and ``shutdown()``, called again and again, never raise.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import Span

import tts_otel
from tts_otel import Stage, Synthesis
from tts_otel.testing import TelemetryCapture, capture

# --- hostile values ---------------------------------------------------------------------


class Boom(Exception):
    """Raised by the hostile objects' special methods: never the caller's own error."""


# The hostile objects' __repr__ raises only while a program runs, so that
# Hypothesis can still print a failing example.
ARMED = [False]


def _boom(*_args: object, **_kwargs: object) -> Any:
    raise Boom("hostile special method")


def _armed_repr(self: object) -> str:
    if ARMED[0]:
        raise Boom("hostile __repr__")
    base: Any = type(self).__mro__[1]
    return f"{type(self).__name__}({base.__repr__(self)})"


class Hostile:
    """Every conversion and comparison raises."""

    __str__ = __format__ = _boom
    __repr__ = _armed_repr
    __hash__ = __eq__ = __ne__ = __lt__ = __bool__ = __len__ = _boom
    __float__ = __int__ = __index__ = __iter__ = __call__ = _boom

    def __getattr__(self, name: str) -> Any:
        raise Boom(name)


class HostileStr(str):
    """Passes ``isinstance(x, str)``; hashing, comparing and printing it raise."""

    __str__ = __format__ = _boom
    __repr__ = _armed_repr
    __hash__ = __eq__ = __ne__ = __len__ = _boom


class HostileInt(int):
    """Passes ``isinstance(x, int)``; converting, hashing and printing it raise."""

    __str__ = __format__ = _boom
    __repr__ = _armed_repr
    __hash__ = __eq__ = __bool__ = __float__ = __index__ = _boom


class HostileFloat(float):
    """Passes ``isinstance(x, float)``; converting, hashing and printing it raise."""

    __str__ = __format__ = _boom
    __repr__ = _armed_repr
    __hash__ = __eq__ = __bool__ = __float__ = _boom


NASTY_STRINGS = ["", " ", '\x00\n\r\t\\",= ', "\ud800", "a\udfffb", "☃" * 100, "other"]
NASTY_NUMBERS: list[object] = [
    -1,
    0,
    1,
    2**63,
    -(2**63) - 1,
    2**1000,
    -0.0,
    1e-300,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
]

hostile: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.sampled_from(NASTY_NUMBERS),
    st.sampled_from(NASTY_STRINGS),
    # Over InfluxDB's 64 KiB string limit; made by a map so reprs stay short.
    st.integers(70_000, 70_001).map(lambda n: "x" * n),
    st.integers(),
    st.floats(),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers(), st.text(max_size=2)),
    st.builds(Hostile),
    st.builds(HostileStr, st.text(max_size=4)),
    st.builds(HostileInt, st.integers()),
    st.builds(HostileFloat, st.floats()),
)
# Valid values too, so that sequences reach the paths behind the checks.
valid: st.SearchStrategy[object] = st.sampled_from(["m", "acoustic", 24000, 480, 0.5, True, 3])
value = st.one_of(valid, hostile)
MISSING = object()  # "leave the keyword out"
maybe = st.one_of(st.just(MISSING), value)
names = st.one_of(st.sampled_from(["acoustic", "vocoder", "acoustic.llm"]), hostile)

REQUEST_KEYWORDS = [
    "model",
    "model_version",
    "sample_rate",
    "kv_cache",
    "streaming",
    "text",
    "characters",
    "language",
    "prompt_text",
    "record_text",
    "attributes",
    "telemetry",
    "start",
]


def keywords(keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(keys), value, max_size=len(keys))


request_keywords = st.builds(
    lambda model, rest: {"model": model, **rest}, value, keywords(REQUEST_KEYWORDS[1:])
)

# --- operations -------------------------------------------------------------------------

RUNNERS = ["here", "copy", "thread", "thread_copy", "to_thread"]
Op = tuple[Any, ...]

leaf: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("audio"), keywords(["samples", "sample_rate", "seconds"])),
    st.tuples(st.just("chunk"), value, maybe),
    st.tuples(st.just("speech_tokens"), value),
    st.tuples(st.just("set_attribute"), value, value),
    st.tuples(st.just("stage_set_attribute"), value, value),
    st.tuples(st.just("begin_segment"), value),
    st.tuples(st.just("start"), names, maybe, maybe),
    st.tuples(st.just("end"), st.integers(0, 3), maybe, maybe, st.sampled_from(RUNNERS)),
    st.tuples(st.just("finalizer"), st.sampled_from(["ok", "raises", "not_callable"])),
    st.tuples(st.just("raise"), st.sampled_from(["error", "abort"])),
    st.tuples(st.just("decorated"), names, st.booleans(), st.booleans()),
    st.tuples(st.just("current")),
)


def _blocks(body: st.SearchStrategy[list[Op]]) -> st.SearchStrategy[Op]:
    return st.one_of(
        st.tuples(
            st.just("stage"),
            names,
            st.sampled_from(["req", "module", "class", "parent"]),
            maybe,
            body,
        ),
        st.tuples(st.just("segment"), value, body),
        st.tuples(st.just("elsewhere"), st.sampled_from(RUNNERS[1:]), body),
        st.tuples(st.just("request"), request_keywords, body),
        st.tuples(st.just("interleaved"), request_keywords, request_keywords, body),
    )


bodies: st.SearchStrategy[list[Op]] = st.recursive(
    st.lists(leaf, max_size=4),
    lambda body: st.lists(st.one_of(leaf, _blocks(body)), max_size=4),
    max_leaves=20,
)
programs = st.lists(st.tuples(request_keywords, bodies), min_size=1, max_size=3)


class CallerError(Exception):
    """The service's own error: must reach the caller unchanged."""


class CallerAbort(BaseException):
    """The service's own BaseException (think KeyboardInterrupt): likewise."""


def _run(where: str, func: Callable[[], None]) -> None:
    if where == "here":
        func()
    elif where == "copy":
        contextvars.copy_context().run(func)
    elif where == "thread":  # a thread of its own starts with an empty context
        with ThreadPoolExecutor(1) as pool:
            pool.submit(func).result()
    elif where == "thread_copy":
        with ThreadPoolExecutor(1) as pool:
            pool.submit(contextvars.copy_context().run, func).result()
    else:

        async def main() -> None:
            await asyncio.to_thread(func)

        asyncio.run(main())


def _span_of(stage: Stage) -> Span | None:
    return None if stage.context is None else trace.get_current_span(stage.context)


def _kwargs(pairs: dict[str, object]) -> dict[str, Any]:
    return {key: item for key, item in pairs.items() if item is not MISSING}


class Interpreter:
    """Runs generated operations and remembers what must hold afterwards."""

    def __init__(self) -> None:
        self.raised: list[BaseException] = []
        self.requests: list[Synthesis] = []
        self.started: list[Stage] = []  # by start(), ended later or never
        self.must_end: list[Span] = []

    def raise_own(self, kind: str) -> None:
        error: BaseException = CallerError("service") if kind == "error" else CallerAbort()
        self.raised.append(error)
        raise error

    def body(self, ops: list[Op], req: Synthesis | None, stages: list[Stage]) -> None:
        for op in ops:
            self.op(op, req, stages)

    # One branch per kind of generated operation: a dispatch table read as one.
    def op(self, op: Op, req: Synthesis | None, stages: list[Stage]) -> None:  # noqa: C901, PLR0912
        kind = op[0]
        if kind == "audio" and req is not None:
            req.audio(**_kwargs(op[1]))
        elif kind == "chunk" and req is not None:
            req.chunk(op[1]) if op[2] is MISSING else req.chunk(op[1], op[2])
        elif kind == "speech_tokens" and req is not None:
            req.speech_tokens(op[1])
        elif kind == "set_attribute" and req is not None:
            req.set_attribute(op[1], op[2])
        elif kind == "stage_set_attribute" and stages:
            stages[-1].set_attribute(op[1], op[2])
        elif kind == "begin_segment" and req is not None:
            req.begin_segment(op[1])
        elif kind == "start":
            started = (req.stage(op[1]) if req is not None else tts_otel.stage(op[1])).start(
                **_kwargs({"current": op[2], "at": op[3]})
            )
            self.started.append(started)
        elif kind == "end" and self.started:
            stage = self.started[op[1] % len(self.started)]
            span = _span_of(stage)
            _run(op[4], lambda: stage.end(**_kwargs({"error": op[2], "at": op[3]})))
            if span is not None:
                self.must_end.append(span)
        elif kind == "finalizer" and req is not None:
            self.finalizer(req, op[1])
        elif kind == "raise":
            self.raise_own(op[1])
        elif kind == "decorated":
            self.decorated(op[1], is_async=op[2], raises=op[3])
        elif kind == "current":
            tts_otel.current()
        elif kind == "stage":
            self.stage(op, req, stages)
        elif kind == "segment" and req is not None:
            with req.segment(op[1]):
                self.body(op[2], req, stages)
        elif kind == "elsewhere":
            _run(op[1], lambda: self.body(op[2], req, stages))
        elif kind == "request":
            self.request(op[1], op[2])
        elif kind == "interleaved":
            self.interleaved(op[1], op[2], op[3])

    def finalizer(self, req: Synthesis, behaviour: str) -> None:
        def ok(error: BaseException | None) -> None:
            pass

        def raises(error: BaseException | None) -> None:
            raise Boom("finalizer")

        chosen: Any = {"ok": ok, "raises": raises, "not_callable": Hostile()}[behaviour]
        req.add_finalizer(chosen)

    def decorated(self, name: Any, *, is_async: bool, raises: bool) -> None:
        def work() -> None:
            if raises:
                self.raise_own("error")

        async def work_async() -> None:
            work()

        if is_async:
            run_async: Any = tts_otel.stage(name)(work_async)
            asyncio.run(run_async())
        else:
            tts_otel.stage(name)(work)()

    def stage(self, op: Op, req: Synthesis | None, stages: list[Stage]) -> None:
        _, name, how, extra, body = op
        if how == "req" and req is not None:
            stage = req.stage(name)
        elif how == "parent" and req is not None:
            stage = req.stage(name, parent=stages[-1] if extra is MISSING and stages else extra)
        elif how == "class":
            stage = Stage(name, **_kwargs({"owner": extra}))
        else:
            stage = tts_otel.stage(name)
        span: Span | None = None
        try:
            with stage:
                span = _span_of(stage)
                self.body(body, req, [*stages, stage])
        finally:
            if span is not None:
                self.must_end.append(span)

    def interleaved(
        self, first_pairs: dict[str, object], second_pairs: dict[str, object], body: list[Op]
    ) -> None:
        """Two requests that overlap without nesting: the first ends first."""
        first = tts_otel.synthesis(**_kwargs(first_pairs))
        second = tts_otel.synthesis(**_kwargs(second_pairs))
        self.requests += [first, second]
        first.__enter__()
        try:
            second.__enter__()
            try:
                self.body(body, second, [])
            finally:
                first.__exit__(None, None, None)
        finally:
            second.__exit__(None, None, None)

    def request(self, pairs: dict[str, object], body: list[Op]) -> None:
        with tts_otel.synthesis(**_kwargs(pairs)) as req:
            self.requests.append(req)
            self.body(body, req, [])


def _check_program(
    cap: TelemetryCapture, program: list[tuple[dict[str, object], list[Op]]]
) -> None:
    run = Interpreter()
    for pairs, body in program:
        caught: BaseException | None = None
        try:
            run.request(pairs, body)
        except (CallerError, CallerAbort) as error:
            caught = error
        # The caller's own error arrives as it was raised, never a replacement.
        assert caught is None or any(caught is own for own in run.raised)
        # Nothing of the request is left on the caller's context.
        assert tts_otel.current() is None
        assert not trace.get_current_span().get_span_context().is_valid
        for req in run.requests:
            assert req.span is trace.INVALID_SPAN or getattr(req.span, "end_time", 0) is not None
        for span in run.must_end:
            assert getattr(span, "end_time", 0) is not None, "a stage span was never ended"
    telemetry = cap.telemetry
    telemetry.exporter_health()
    for _ in range(2):
        telemetry.force_flush()
    for _ in range(2):
        telemetry.shutdown()
    telemetry.force_flush()
    # A request on a handle already shut down runs as usual, unmeasured.
    with tts_otel.synthesis(model="m", telemetry=telemetry) as req:
        with req.stage("acoustic"):
            req.audio(samples=480, sample_rate=24000)
    assert tts_otel.current() is None


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=programs)
def test_public_api_survives_hostile_programs(
    program: list[tuple[dict[str, object], list[Op]]],
) -> None:
    # Each example starts from a clean context of its own: a leak from one
    # example must not be blamed on the next.
    def check() -> None:
        with capture() as cap:
            ARMED[0] = True
            try:
                _check_program(cap, program)
            finally:
                ARMED[0] = False

    contextvars.copy_context().run(check)


# --- each defect the property test found, kept as a plain test ----------------------------


def _clean(cap: TelemetryCapture) -> None:
    assert tts_otel.current() is None
    assert not trace.get_current_span().get_span_context().is_valid
    assert all(span.end_time is not None for span in cap.spans())


def test_a_rejected_value_whose_repr_raises_is_still_warned_about(
    cap: TelemetryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    # The warning formatted the value with %r lazily: "--- Logging error ---" on stderr,
    # and an exception under a handler that re-raises (pytest's).
    ARMED[0] = True
    try:
        with tts_otel.synthesis(model=Hostile()) as req:  # type: ignore[arg-type]
            req.speech_tokens(Hostile())  # type: ignore[arg-type]
    finally:
        ARMED[0] = False
    assert "cannot be printed" in caplog.text
    _clean(cap)


def test_start_that_is_not_a_number_is_dropped(cap: TelemetryCapture) -> None:
    # Was: TypeError from __enter__ (min(start, perf_counter())).
    with tts_otel.synthesis(model="m", start="m"):  # type: ignore[arg-type]
        pass
    assert len(cap.spans_named("tts.synthesize")) == 1
    _clean(cap)


@pytest.mark.parametrize("telemetry", ["m", Hostile()], ids=["str", "hostile"])
def test_telemetry_that_is_not_a_telemetry_is_dropped(
    cap: TelemetryCapture, telemetry: object
) -> None:
    # Was: TypeError from __bool__ at construction, AttributeError on every later call.
    with tts_otel.synthesis(model="m", telemetry=telemetry) as req:  # type: ignore[arg-type]
        req.audio(samples=480, sample_rate=24000)
        req.speech_tokens(3)
    assert len(cap.spans_named("tts.synthesize")) == 1
    _clean(cap)


@pytest.mark.parametrize("ended_in", RUNNERS)
def test_a_stage_left_open_or_ended_elsewhere_leaves_with_its_request(
    cap: TelemetryCapture, ended_in: str
) -> None:
    # Was: the stage's span stayed current after the request, and the next request
    # became its child.
    with tts_otel.synthesis(model="m") as req:
        stage = req.stage("acoustic").start()
        if ended_in != "here":
            _run(ended_in, stage.end)
    _clean(cap)
    with tts_otel.synthesis(model="m"):
        pass
    assert cap.spans_named("tts.synthesize")[-1].parent is None


def test_interleaved_requests_leave_nothing_current(cap: TelemetryCapture) -> None:
    first, second = tts_otel.synthesis(model="a"), tts_otel.synthesis(model="b")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    _clean(cap)


@pytest.mark.parametrize("at", ["m", math.nan, HostileFloat(1.0), 10**400], ids=repr)
def test_end_at_a_bad_reading_still_ends_the_stage(cap: TelemetryCapture, at: object) -> None:
    # Was: the arithmetic raised before the span ended: an open span, an attached context.
    with tts_otel.synthesis(model="m") as req:
        stage = req.stage("acoustic").start()
        stage.end(at=at)  # type: ignore[arg-type]
        assert trace.get_current_span() is req.span
    assert len(cap.spans_named("tts.acoustic")) == 1
    _clean(cap)


def test_start_with_a_hostile_current_ends_what_it_started(cap: TelemetryCapture) -> None:
    # Was: the span was started, `if current:` raised, and the span was never ended.
    with tts_otel.synthesis(model="m") as req:
        req.stage("acoustic").start(current=Hostile())  # type: ignore[arg-type]
    assert len(cap.spans_named("tts.acoustic")) == 1
    _clean(cap)


@pytest.mark.parametrize("key", [Hostile(), HostileStr("k"), b"k", None], ids=repr)
def test_set_attribute_with_a_hostile_key_is_dropped(cap: TelemetryCapture, key: object) -> None:
    # Was: Boom from the SDK's `if not key` / hashing, raised into the service.
    with tts_otel.synthesis(model="m") as req:
        req.set_attribute(key, 1)  # type: ignore[arg-type]
        with req.stage("acoustic") as stage:
            stage.set_attribute(key, 1)  # type: ignore[arg-type]
    _clean(cap)


@pytest.mark.parametrize("keyword", ["model", "record_text", "language"])
def test_a_str_subclass_is_recorded_as_its_plain_value(cap: TelemetryCapture, keyword: str) -> None:
    # Was: the request ran unmeasured (hashing raised), and a stage left open in it
    # could not be taken off the caller's context.
    pairs: dict[str, Any] = {"model": "m", keyword: HostileStr("hash")}
    with tts_otel.synthesis(**pairs) as req:
        req.stage("acoustic").start()
    assert len(cap.spans_named("tts.synthesize")) == 1
    _clean(cap)


@pytest.mark.parametrize("calls", [[1e308, 1e308], [2**63], [2**62, 2**62]], ids=repr)
def test_speech_tokens_beyond_int64_are_dropped(cap: TelemetryCapture, calls: list[Any]) -> None:
    # Was: OverflowError from the SDK's histogram, out of force_flush() (and on the
    # metric buffer's thread).
    with tts_otel.synthesis(model="m", characters=1e308) as req:  # type: ignore[arg-type]
        for count in calls:
            req.speech_tokens(count)
    assert cap.telemetry.force_flush()
    _clean(cap)
