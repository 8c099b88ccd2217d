"""A real web service (tests/fastapi_app.py on uvicorn, in a subprocess) under concurrent
clients, then stopped with SIGTERM as a supervisor stops it.

Every request must succeed, become one trace holding its own stages, and be
in the exported file after the process died by the signal.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.services import free_port, running
from tests.test_shutdown import request_spans
from tts_otel.read.records import SpanRecord, from_otlp_json

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ENDPOINTS = ("stream", "async", "sync")
PER_ENDPOINT = 12
# text_normalization once, then acoustic and vocoder per chunk (streaming) or once.
STAGES = {
    "stream": Counter({"tts.text_normalization": 1, "tts.acoustic": 3, "tts.vocoder": 3}),
    "async": Counter({"tts.text_normalization": 1, "tts.acoustic": 1, "tts.vocoder": 1}),
    "sync": Counter({"tts.text_normalization": 1, "tts.acoustic": 1, "tts.vocoder": 1}),
}


def _call(base: str, endpoint: str, request_id: str, slow: bool = False) -> int:
    params = {"request_id": request_id, **({"slow": "1"} if slow else {})}
    response = httpx.get(f"{base}/{endpoint}", params=params, timeout=30)
    response.raise_for_status()
    return len(response.content)


def _check_traces(directory: Path, request_ids: dict[str, str]) -> None:
    """Each request id: one request span, alone in its trace, with exactly its stages."""
    spans = list(from_otlp_json(directory / "traces.jsonl"))
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    requests = request_spans(directory)
    assert sorted(str(s.attributes.get("app.request_id")) for s in requests) == sorted(request_ids)
    for request in requests:
        endpoint = request_ids[str(request.attributes["app.request_id"])]
        trace = by_trace[request.trace_id]
        assert [s.name for s in trace].count("tts.synthesize") == 1
        # FastAPI adds its own server spans to the trace; the stages are tts-otel's.
        stages = [s for s in trace if s.name.startswith("tts.") and s.name != "tts.synthesize"]
        assert all(s.parent_id == request.span_id for s in stages), endpoint
        assert Counter(s.name for s in stages) == STAGES[endpoint], endpoint


@pytest.mark.parametrize("style", ["import", "lifespan"])
def test_fastapi_on_uvicorn_serves_concurrent_requests_and_keeps_them_after_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    monkeypatch.setenv("TTS_OTEL_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("APP_STYLE", style)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    request_ids = {f"{e}-{i}": e for e in ENDPOINTS for i in range(PER_ENDPOINT)}
    with running(command, tmp_path / "uvicorn.log", ready_url=f"{base}/docs") as server:
        with ThreadPoolExecutor(max_workers=8) as clients:
            sizes = list(clients.map(lambda rid: _call(base, request_ids[rid], rid), request_ids))
        assert sizes.count(4800 * 3) == PER_ENDPOINT  # every stream arrived whole
        if style == "lifespan":
            # In flight at SIGTERM: uvicorn's graceful shutdown waits for it, then the
            # lifespan shuts tts-otel down, so its spans are flushed too.
            with ThreadPoolExecutor(max_workers=1) as late:
                slow = late.submit(_call, base, "async", "async-slow", True)
                time.sleep(0.3)
                server.send_signal(signal.SIGTERM)
                assert slow.result(timeout=30) > 0
            request_ids["async-slow"] = "async"
        else:
            server.send_signal(signal.SIGTERM)
        assert server.wait(30) == -signal.SIGTERM  # uvicorn re-raised it; we did not change that
    log = (tmp_path / "uvicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    _check_traces(tmp_path / "out", request_ids)
