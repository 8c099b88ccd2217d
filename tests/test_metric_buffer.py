"""The metric buffer's drainer thread: records in the background, never hides a batch from a
collection, and stops on close."""

from __future__ import annotations

import os
import signal
import threading
import time

from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from tests.services import wait_for
from tts_otel._metric_buffer import MetricBuffer


class Recorder:
    """A record function that notes values; ``gate`` holds the recording thread while cleared."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(
        self,
        value: float,
        attributes: dict[str, AttributeValue],
        context: Context | None = None,
    ) -> None:
        self.entered.set()
        self.gate.wait()
        self.threads.add(threading.current_thread().name)
        self.values.append(value)


def test_the_drainer_records_without_a_collection() -> None:
    buffer, record = MetricBuffer(capacity=16), Recorder()
    buffer.push([(record, 1.0, {}, None), (record, 2.0, {}, None)])
    wait_for(lambda: record.values == [1.0, 2.0], timeout=5, what="the drainer to record")
    assert record.threads == {"tts-otel-metric-buffer"}
    buffer.close()
    buffer.push([(record, 3.0, {}, None)])
    time.sleep(3 * MetricBuffer.DRAIN_INTERVAL_S)
    assert record.values == [1.0, 2.0]  # closed: what is left waits for the last collection
    buffer.drain()
    assert record.values == [1.0, 2.0, 3.0]


def test_a_collection_waits_for_a_drain_in_progress() -> None:
    buffer, record = MetricBuffer(capacity=16), Recorder()
    record.gate.clear()
    buffer.push([(record, 1.0, {}, None)])
    assert record.entered.wait(5)  # the drainer has taken batch 1 and is recording it
    buffer.push([(record, 2.0, {}, None)])
    collection = threading.Thread(target=buffer.drain)
    collection.start()
    collection.join(0.2)
    assert collection.is_alive()  # it must not return before batch 1 is recorded
    record.gate.set()
    collection.join(5)
    assert record.values == [1.0, 2.0]
    buffer.close()


def test_a_forked_child_records_even_if_the_parent_was_recording_at_the_fork() -> None:
    buffer, record = MetricBuffer(capacity=16), Recorder()
    buffer.push([(record, 1.0, {}, None)])
    wait_for(lambda: record.values == [1.0], timeout=5, what="the parent's drainer")
    with buffer._recording, buffer._lock:  # as if the drainer were mid-drain at the fork
        pid = os.fork()
        if pid == 0:  # the child: its own drainer and locks, or it hangs and the alarm ends it
            signal.alarm(5)
            buffer.push([(record, 2.0, {}, None)])
            ok = wait_for(lambda: 2.0 in record.values, timeout=3, what="the child's drainer")
            buffer.push([(record, 3.0, {}, None)])
            buffer.drain()
            os._exit(0 if ok and record.values == [1.0, 2.0, 3.0] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    buffer.close()


def test_a_measurement_the_sdk_refuses_costs_that_measurement_only() -> None:
    recorder = Recorder()

    def refuse(value: float, attributes: object, context: Context | None = None) -> None:
        raise OverflowError("int too large to convert")

    buffer = MetricBuffer(16)
    try:
        buffer.push(
            [(recorder, 1.0, {}, None), (refuse, 2**70, {}, None), (recorder, 3.0, {}, None)]
        )
        buffer.drain()  # must not raise into force_flush or the drainer thread
        assert recorder.values == [1.0, 3.0]
        assert buffer.dropped == 1
    finally:
        buffer.close()
