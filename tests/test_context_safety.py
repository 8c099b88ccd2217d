"""Requests and stages in the contexts services really use: copied contexts, thread
pools, ``asyncio.to_thread``, generators resumed elsewhere; finalizers that fail;
settings of the wrong type; exception messages that quote the input."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import trace

import tts_otel
from tts_otel import semconv
from tts_otel.testing import TelemetryCapture, attributes, capture

TEXT = "请把我的地址北京市海淀区念出来"


class ServiceError(RuntimeError):
    pass


def _assert_clean_caller(cap: TelemetryCapture) -> None:
    """The request ended whole and left nothing on the caller's context."""
    assert tts_otel.current() is None
    assert not trace.get_current_span().get_span_context().is_valid
    roots = cap.spans_named(semconv.SPAN_SYNTHESIZE)
    assert len(roots) == 1
    assert roots[0].end_time is not None
    with tts_otel.synthesis(model="m"):
        pass
    # The next request is a root of its own, not a child of the one before.
    assert cap.spans_named(semconv.SPAN_SYNTHESIZE)[-1].parent is None


def _in_copied_context(run: Callable[[], Any]) -> None:
    contextvars.copy_context().run(run)


def _in_pool_with_copied_context(run: Callable[[], Any]) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(contextvars.copy_context().run, run).result()


def _in_to_thread(run: Callable[[], Any]) -> None:
    async def main() -> None:
        await asyncio.to_thread(run)

    asyncio.run(main())


RUNNERS = {
    "copy_context": _in_copied_context,
    "thread_pool": _in_pool_with_copied_context,
    "to_thread": _in_to_thread,
}


@pytest.mark.parametrize("runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_begin_segment_in_another_context_does_not_raise_at_exit(
    cap: TelemetryCapture, runner: Callable[[Callable[[], Any]], None]
) -> None:
    with tts_otel.synthesis(model="m") as req:
        runner(lambda: req.begin_segment(1))
    _assert_clean_caller(cap)


@pytest.mark.parametrize("runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_a_stage_in_another_context_is_recorded_under_the_request(
    cap: TelemetryCapture, runner: Callable[[Callable[[], Any]], None]
) -> None:
    def work() -> None:
        with tts_otel.stage("vocoder"):
            pass

    with tts_otel.synthesis(model="m") as req:
        runner(lambda: req.stage("acoustic").__enter__())  # entered there, never exited
        runner(work)
    _assert_clean_caller(cap)


def test_the_service_exception_is_what_the_caller_sees(cap: TelemetryCapture) -> None:
    failure = ServiceError("model failed")

    def serve() -> None:
        with tts_otel.synthesis(model="m") as req:
            _in_copied_context(lambda: req.begin_segment(0))
            raise failure

    with pytest.raises(ServiceError) as raised:
        serve()
    assert raised.value is failure
    _assert_clean_caller(cap)


def _stream(chunks: int) -> Iterator[bytes]:
    with tts_otel.synthesis(model="m", streaming=True) as req:
        for index in range(chunks):
            with req.stage("vocoder"):
                pass
            req.chunk(2400, 24000)
            yield bytes(index)


def test_a_streaming_generator_resumed_in_a_thread_pool_like_starlette(
    cap: TelemetryCapture,
) -> None:
    async def serve() -> list[bytes]:
        # Starlette's iterate_in_threadpool: every next() in its own copied context.
        stream = _stream(3)
        received: list[bytes] = []
        while True:
            chunk = await asyncio.to_thread(next, stream, None)
            if chunk is None:
                return received
            received.append(chunk)

    assert len(asyncio.run(serve())) == 3
    _assert_clean_caller(cap)
    root = cap.spans_named(semconv.SPAN_SYNTHESIZE)[0]
    assert attributes(root)[semconv.ATTR_AUDIO_CHUNKS] == 3
    vocoders = cap.spans_named("tts.vocoder")
    assert len(vocoders) == 3
    assert all(v.parent is not None and v.parent.span_id == root.context.span_id for v in vocoders)


def test_a_failing_finalizer_still_ends_the_request_and_its_stages(cap: TelemetryCapture) -> None:
    def broken(error: BaseException | None) -> None:
        raise RuntimeError("finalizer bug")

    with tts_otel.synthesis(model="m") as req:
        stage = req.stage("acoustic").start(current=False)
        req.add_finalizer(broken)
        req.add_finalizer(lambda error: stage.end(error))
    root = cap.spans_named(semconv.SPAN_SYNTHESIZE)[0]
    assert root.end_time is not None
    (acoustic,) = cap.spans_named("tts.acoustic")
    assert acoustic.end_time is not None
    assert acoustic.parent is not None
    assert acoustic.parent.span_id == root.context.span_id
    assert cap.counter(semconv.METRIC_REQUESTS) == 1
    assert cap.histogram(semconv.METRIC_STAGE_DURATION, {semconv.ATTR_STAGE: "acoustic"}).count == 1
    _assert_clean_caller(cap)


BAD_VALUES: list[Any] = [["a"], {"k": "v"}]
SETTINGS = ["model", "model_version", "sample_rate", "kv_cache", "streaming", "record_text"]


@pytest.mark.parametrize("value", BAD_VALUES, ids=["list", "dict"])
@pytest.mark.parametrize("setting", SETTINGS)
def test_a_setting_of_the_wrong_type_is_dropped_not_raised(
    cap: TelemetryCapture, setting: str, value: Any
) -> None:
    kwargs: dict[str, Any] = {"model": "m", setting: value}
    with tts_otel.synthesis(**kwargs) as req:
        with req.stage("vocoder"):
            pass
    root = attributes(cap.spans_named(semconv.SPAN_SYNTHESIZE)[0])
    assert all(not isinstance(v, list | dict) or not v for v in root.values())
    assert cap.counter(semconv.METRIC_REQUESTS) == 1
    assert cap.counter(semconv.METRIC_TELEMETRY_DROPPED, {"tts.telemetry.signal": "invalid_value"})


def test_a_stage_name_that_is_not_a_str_warns_once(
    cap: TelemetryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            with tts_otel.synthesis(model="m"):
                with tts_otel.stage(42):  # type: ignore[arg-type]
                    pass
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert len(cap.spans_named(semconv.SPAN_SYNTHESIZE)) == 3


def _exported_text(cap: TelemetryCapture) -> str:
    parts = []
    for span in cap.spans():
        parts.append(str(span.status.description))
        parts += [str(v) for v in attributes(span).values()]
        for event in span.events:
            parts += [str(v) for v in attributes(event).values()]
    return "\n".join(parts)


def _fail_with_text() -> None:
    with tts_otel.synthesis(model="m", text=TEXT) as req:
        with req.stage("text_normalization"):
            raise ValueError(f"cannot normalise {TEXT}")


def test_exception_messages_are_not_exported_by_default(cap: TelemetryCapture) -> None:
    with pytest.raises(ValueError, match="cannot normalise"):
        _fail_with_text()
    exported = _exported_text(cap)
    assert TEXT not in exported
    assert "builtins" not in exported
    assert "ValueError" in exported
    stage = cap.spans_named("tts.text_normalization")[0]
    assert [attributes(e) for e in stage.events] == [{"exception.type": "ValueError"}]


def test_exception_messages_are_exported_with_plain_text_recording() -> None:
    with capture(record_text=True) as cap:
        with pytest.raises(ValueError, match="cannot normalise"):
            _fail_with_text()
    stage = cap.spans_named("tts.text_normalization")[0]
    assert TEXT in str(attributes(stage.events[0])["exception.message"])


@pytest.mark.parametrize("timeout", [None, "5", -1, float("nan")])
def test_force_flush_with_a_bad_timeout_returns_false_not_raises(timeout: Any) -> None:
    with capture() as cap:
        with tts_otel.synthesis(model="m"):
            pass
        assert cap.telemetry.force_flush(timeout) in (True, False)
        assert cap.telemetry.force_flush() is True
