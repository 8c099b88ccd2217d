"""Stopping a service keeps its last telemetry: flush on SIGTERM/SIGINT, and ``with configure()``.

Servers such as uvicorn re-raise SIGTERM after their graceful shutdown, so
the process dies by the signal and the SDK's atexit flush never runs. These
tests stop real processes by signal and read what the ``file`` exporter wrote.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tts_otel
from tts_otel.read.records import SpanRecord, from_otlp_json
from tts_otel.telemetry import get_telemetry, set_telemetry

REQUESTS = 5

# Five requests, then the signal, as a supervisor sends it. No GPU probing: it is not
# what is tested, and importing torch would only slow the child down.
_CHILD = """
import os, signal, sys, time
import tts_otel
{before}
tts_otel.configure(service_name="stopped", exporters="file", output_dir=sys.argv[1],
                   nvml=False, gpu_memory=False)
for _ in range({requests}):
    with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
        pass
os.kill(os.getpid(), signal.{signal})
time.sleep(30)  # the signal ends the process long before this
sys.exit(0)
"""

_OWN_HANDLER = """
def own(signum, frame):
    print("own handler ran", flush=True)
    sys.exit(3)
signal.signal(signal.{signal}, own)
"""


@pytest.fixture(autouse=True)
def _restore_active() -> Iterator[None]:
    yield
    set_telemetry(None)


def request_spans(directory: Path) -> list[SpanRecord]:
    path = directory / "traces.jsonl"
    if not path.exists():
        return []
    return [span for span in from_otlp_json(path) if span.name == "tts.synthesize"]


def _stop_child(
    tmp_path: Path, signal_name: str, before: str = ""
) -> subprocess.CompletedProcess[str]:
    script = _CHILD.format(before=before, requests=REQUESTS, signal=signal_name)
    # The child starts with the signals' default actions, as a service does: a test run
    # launched in the background (nohup, `cmd &`) inherits SIGINT ignored, and Python
    # then leaves it ignored.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_default_signal_actions,
    )


def _default_signal_actions() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_with_the_default_action_flushes_then_still_kills(
    tmp_path: Path, signal_name: str
) -> None:
    done = _stop_child(tmp_path, signal_name)
    if signal_name == "SIGTERM":
        assert done.returncode == -signal.SIGTERM, done.stderr  # died by the signal, as before
    else:
        assert "KeyboardInterrupt" in done.stderr  # Python's own SIGINT behaviour is kept
    assert len(request_spans(tmp_path)) == REQUESTS


def test_the_service_handler_still_runs_after_the_flush(tmp_path: Path) -> None:
    done = _stop_child(tmp_path, "SIGTERM", before=_OWN_HANDLER.format(signal="SIGTERM"))
    assert done.returncode == 3, done.stderr
    assert "own handler ran" in done.stdout
    assert len(request_spans(tmp_path)) == REQUESTS


def test_flush_on_signals_false_leaves_the_handlers_alone() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    telemetry = tts_otel.configure(set_global=False, nvml=False, flush_on_signals=False)
    try:
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    finally:
        telemetry.shutdown()


def test_an_ignored_signal_stays_ignored_and_shutdown_restores_handlers() -> None:
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Python's own SIGINT handler, whatever this run inherited (see _stop_child).
    inherited_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        telemetry = tts_otel.configure(set_global=False, nvml=False)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is not previous_int  # ours, chained
        telemetry.shutdown()
        assert signal.getsignal(signal.SIGINT) is previous_int
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, inherited_int)


def test_configure_outside_the_main_thread_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    built: list[tts_otel.Telemetry] = []
    worker = threading.Thread(
        target=lambda: built.append(tts_otel.configure(set_global=False, nvml=False))
    )
    worker.start()
    worker.join(30)
    assert len(built) == 1
    assert signal.getsignal(signal.SIGTERM) is before
    built[0].shutdown()


def test_configure_as_a_context_manager_shuts_down_at_the_end(tmp_path: Path) -> None:
    with tts_otel.configure(
        exporters="file", output_dir=tmp_path, set_global=False, nvml=False, gpu_memory=False
    ) as telemetry:
        for _ in range(REQUESTS):
            with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
                pass
    assert len(request_spans(tmp_path)) == REQUESTS
    assert get_telemetry() is not telemetry  # no longer the active handle
