"""Worker processes: each child's spans and metrics exported once, no child hung.

multiprocessing ends its children with ``os._exit``, so no ``atexit`` flush
runs there; a forked child inherits the parent's locks, queues and metric
state; a spawned or forkserver child inherits nothing. tests/worker_pools.py
is the service, run in a subprocess with a deadline: a hung child fails the
test, it does not hang the suite.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import tts_otel
from tests.test_shutdown import request_spans
from tests.worker_pools import PARENT_REQUESTS, REQUESTS, TASKS
from tts_otel import semconv
from tts_otel._fork import _clear_metric_state
from tts_otel.exporters.otlp_json import OtlpJsonSpanExporter

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "worker_pools.py"
DEADLINE_S = 120
INSTANCE = "service.instance.id"


def _run(tmp_path: Path, start_method: str, pool: str, configure: bool) -> dict[str, Any]:
    env = {
        **os.environ,
        "TTS_OTEL_OUTPUT_DIR": str(tmp_path),
        "TTS_OTEL_NVML": "false",
        "TTS_OTEL_GPU_MEMORY": "false",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    mode = "configure" if configure else "inherit"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), start_method, pool, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE_S,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = result.stderr
    return report


def _metric_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service.instance.id, metric) for every metric in an OTLP JSON lines file."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            for resource_metrics in json.loads(line)["resourceMetrics"]:
                resource = resource_metrics["resource"]["attributes"]
                instance = next(a["value"]["stringValue"] for a in resource if a["key"] == INSTANCE)
                for scope in resource_metrics["scopeMetrics"]:
                    for metric in scope["metrics"]:
                        yield instance, metric


def _requests_counted(path: Path) -> dict[str, int]:
    """The last ``tts.requests`` total each process (by service.instance.id) exported."""
    last: dict[str, int] = {}
    for instance, metric in _metric_lines(path):
        if metric["name"] == semconv.METRIC_REQUESTS:
            last[instance] = sum(int(p["asInt"]) for p in metric["sum"]["dataPoints"])
    return last


def _check(tmp_path: Path, report: dict[str, Any], children_export: bool) -> None:
    made = {int(pid): count for pid, count in report["children"].items()}
    assert sum(made.values()) == TASKS * REQUESTS
    spans = request_spans(tmp_path)
    by_pid = Counter(int(span.attributes["test.pid"]) for span in spans)
    # Exactly once: the parent's own requests are not exported again by its children.
    assert by_pid[report["parent"]] == PARENT_REQUESTS
    exported = {pid: by_pid[pid] for pid in made}
    assert exported == (made if children_export else dict.fromkeys(made, 0))
    instance_of = {int(span.attributes["test.pid"]): span.attributes[INSTANCE] for span in spans}
    counted = _requests_counted(tmp_path / "metrics.jsonl")
    assert counted[instance_of[report["parent"]]] == PARENT_REQUESTS
    if children_export:  # each child counts its own requests, not its parent's as well
        assert {pid: counted.get(instance_of[pid]) for pid in made} == made


POOLS = ["executor", "pool-with", "pool-join"]


@pytest.mark.parametrize("pool", POOLS)
def test_forked_workers_export_their_own_spans_and_metrics_once(tmp_path: Path, pool: str) -> None:
    report = _run(tmp_path, "fork", pool, configure=False)
    _check(tmp_path, report, children_export=True)
    assert "tts-otel" not in report["stderr"]


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_workers_that_configure_in_the_initializer_export_their_spans_and_metrics(
    tmp_path: Path, start_method: str, pool: str
) -> None:
    report = _run(tmp_path, start_method, pool, configure=True)
    _check(tmp_path, report, children_export=True)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_a_child_the_parents_set_up_cannot_serve_says_what_to_call(
    tmp_path: Path, start_method: str
) -> None:
    report = _run(tmp_path, start_method, "pool-join", configure=False)
    _check(tmp_path, report, children_export=False)
    warnings = [line for line in report["stderr"].splitlines() if "tts-otel" in line]
    # One warning per child that made requests, naming what to call.
    assert len(warnings) == len(report["children"]), report["stderr"]
    assert all("initializer=tts_otel.configure" in line for line in warnings)


# --- a fork while another thread writes the file --------------------------------------
FORKS = 40
CHILD_DEADLINE_S = 10.0


def test_a_child_forked_while_the_file_exporter_writes_exits(tmp_path: Path) -> None:
    """The child writes, then shuts the exporter down, as a forked worker's exit does:
    the lock and any half-written buffer the parent's writer held at the fork must not
    follow it there."""
    exporter = OtlpJsonSpanExporter(tmp_path / "traces.jsonl")
    line = json.dumps({"resourceSpans": [], "padding": "x" * 200_000})
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            exporter._lines.write(line)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    children = []
    try:
        for _ in range(FORKS):
            time.sleep(0.002)
            pid = os.fork()
            if pid == 0:
                ok = exporter._lines.write(line)
                exporter.shutdown()
                os._exit(0 if ok else 1)
            children.append(pid)
    finally:
        stop.set()
        writer.join(10)
    hung, failed = _reap(children)
    exporter.shutdown()
    assert (hung, failed) == (0, 0), f"{hung} of {FORKS} children hung, {failed} failed"
    # Whole lines only: nothing the parent had half written was written again by a child.
    with (tmp_path / "traces.jsonl").open(encoding="utf-8") as lines:
        assert all(json.loads(text)["padding"] for text in lines)


def _reap(children: list[int]) -> tuple[int, int]:
    """(hung, failed): children still running after the deadline are killed and counted."""
    deadline = time.monotonic() + CHILD_DEADLINE_S
    waiting, failed = set(children), 0
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                waiting.discard(pid)
                failed += os.waitstatus_to_exitcode(status) != 0
        time.sleep(0.01)
    for pid in waiting:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return len(waiting), failed


# --- a dead collector ----------------------------------------------------------------
class _HungExporter(SpanExporter):
    """An export that never returns, as one to a blackholed collector can."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        threading.Event().wait()
        return SpanExportResult.SUCCESS


def _one_request() -> None:
    with tts_otel.synthesis(model="glm-tts", text="hello", sample_rate=24000):
        pass


def test_a_worker_does_not_wait_forever_on_a_hung_export_at_its_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tts_otel._fork.FLUSH_SECONDS", 0.5)
    # The parent makes no span, so its own shutdown has nothing to wait for.
    with tts_otel.configure(
        exporters=[_HungExporter()],
        set_global=False,
        nvml=False,
        cuda=None,
        flush_on_signals=False,
    ):
        child = multiprocessing.get_context("fork").Process(target=_one_request)
        child.start()
        child.join(CHILD_DEADLINE_S)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
    assert not hung, "the worker waited on the hung export at its exit"
    assert child.exitcode == 0


def test_the_sdk_metric_state_a_forked_child_clears_is_where_it_is_looked_for() -> None:
    # The private SDK attributes tts_otel._fork clears in a child: without them a
    # child's totals silently include its parent's measurements.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("test").create_counter("requests")
    counter.add(3)
    _clear_metric_state(provider)
    counter.add(2)
    data = reader.get_metrics_data()
    assert data is not None
    [point] = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert isinstance(point, NumberDataPoint)
    assert point.value == 2
    provider.shutdown()


def test_a_forked_child_reports_its_own_drop_counts_not_its_parents() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from tts_otel._batching import CountingBatchSpanProcessor
    from tts_otel._validation import ValueChecker

    checker = ValueChecker()
    for value in range(3):
        checker.reject("samples", -value - 1, "negative")

    release = threading.Event()

    class Hung(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(10)
            return SpanExportResult.SUCCESS

    processor = CountingBatchSpanProcessor(Hung(), meter_provider=MeterProvider())
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    tracer = tracer_provider.get_tracer("t")
    for _ in range(5000):  # past the queue of 2048 behind a hung exporter
        tracer.start_span("s").end()
    assert checker.dropped == 3
    assert processor.dropped() > 0
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, json.dumps([checker.dropped, checker.cut, processor.dropped()]).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(os.read(read, 1000)) == [0, 0, 0]
    assert checker.dropped == 3  # the parent keeps its own
    release.set()
    tracer_provider.shutdown()
