"""GLM-TTS's web UI (the stand-in tools/gradio_app.py) served for real by gradio on a free
loopback port, under `opentelemetry-instrument`, and clicked with gradio_client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services import free_port, wait_for

STANDIN = Path(__file__).parent.parent / "glmtts_standin"
PROMPT = "他当时还跟线下其他的站姐吵架。"
PROMPT_WAV = STANDIN / "examples" / "prompt" / "jiayan_zh.wav"


@dataclass(frozen=True)
class Click:
    """What one client got: its text, wall time at the client, and the audio or the error."""

    text: str
    started_ns: int
    ended_ns: int
    samples: int = 0
    sample_rate: int = 0
    error: str | None = None

    @property
    def seconds(self) -> float:
        return (self.ended_ns - self.started_ns) / 1e9


@contextmanager
def served(
    out: Path, log: Path, env: Mapping[str, str], stop: signal.Signals = signal.SIGTERM
) -> Iterator[str]:
    """`opentelemetry-instrument python -m tools.gradio_app` from GLM-TTS's folder, as its
    README runs it; yields the URL. Stopped with ``stop``: SIGTERM, as a service manager
    stops it, unless a test says otherwise."""
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")])),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TTS_OTEL_OUTPUT_DIR": str(out),
        **env,
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    url = f"http://127.0.0.1:{port}/"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(instrument), sys.executable, "-m", "tools.gradio_app"],
            cwd=STANDIN,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready() -> bool:
                if server.poll() is not None:
                    pytest.fail(f"the web UI exited: {log.read_text()[-3000:]}")
                return "Running on local URL" in log.read_text(errors="replace")

            wait_for(ready, 120, "the web UI to serve")
            yield url
        finally:
            server.send_signal(stop)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                pytest.fail(f"the web UI did not stop on {stop.name}: {log.read_text()[-3000:]}")


def client(url: str) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False)


def click(
    url: str,
    text: str,
    prompt_wav: Path = PROMPT_WAV,
    *,
    connected: Any = None,
    ready: threading.Barrier | None = None,
) -> Click:
    """One click of "Generate" by a client of its own (``connected``, or a new one), timed
    at the client; with ``ready``, sent when every client of the barrier is connected."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = connected if connected is not None else globals()["client"](url)
    if ready is not None:
        ready.wait(60)
    started = time.time_ns()
    try:
        result: Any = client.predict(
            PROMPT,
            handle_file(str(prompt_wav)),
            text,
            42,
            24000,
            True,
            api_name="/run_inference",
        )
    except AppError as error:
        return Click(text, started, time.time_ns(), error=str(error))
    ended = time.time_ns()
    with wave.open(str(result)) as audio:
        return Click(text, started, ended, audio.getnframes(), audio.getframerate())


def requests_counted(metrics: Path) -> dict[str, int]:
    """``tts.requests`` by outcome, from the file exporter's last (cumulative) export."""
    counted: dict[str, int] = {}
    for line in metrics.read_text().splitlines():
        found: dict[str, int] = {}
        for resource in json.loads(line).get("resourceMetrics", []):
            for scope in resource.get("scopeMetrics", []):
                for metric in scope.get("metrics", []):
                    if metric["name"] != "tts.requests":
                        continue
                    for point in metric["sum"]["dataPoints"]:
                        attributes = {a["key"]: a["value"] for a in point["attributes"]}
                        outcome = attributes["tts.outcome"]["stringValue"]
                        found[outcome] = found.get(outcome, 0) + int(point["asInt"])
        counted = found or counted
    return counted
