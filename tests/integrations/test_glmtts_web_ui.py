"""GLM-TTS's web UI served for real: gradio on a loopback port, under opentelemetry-instrument
(FastAPI's own spans on), clicked by several gradio_client clients at once.

Each click must be one request and its own trace root, counted once, with model loading
inside the first and queue wait beside each, and a click that fails counted as failed.
Every number is checked against what the clients received and timed."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integrations.web_ui import Click, click, client, requests_counted, served
from tts_otel import semconv
from tts_otel.read.records import SpanRecord, from_otlp_json

pytestmark = pytest.mark.torch

TEXTS = ["我最爱吃人参果，你喜欢吃吗？" * (1 + i) for i in range(4)]


def _clicks(url: str, bad_prompt: Path) -> list[Click]:
    first = click(url, "今天北京的最高气温是23.5度。")  # loads the models
    connected = [client(url) for _ in TEXTS]
    ready = threading.Barrier(len(TEXTS))
    with ThreadPoolExecutor(len(TEXTS)) as pool:
        sent = [
            pool.submit(click, url, text, connected=c, ready=ready)
            for text, c in zip(TEXTS, connected, strict=True)
        ]
        together = [future.result() for future in sent]
    failed = click(url, "你好。", prompt_wav=bad_prompt)
    return [first, *together, failed]


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Click], Path]:
    pytest.importorskip("gradio_client")
    tmp = tmp_path_factory.mktemp("web_ui")
    bad_prompt = tmp / "not_audio.wav"
    bad_prompt.write_text("this is not a wav file")
    out = tmp / "out"
    env = {
        "OTEL_SERVICE_NAME": "glm-tts-web",
        "TTS_OTEL_EXPORTERS": "file",
        "TTS_OTEL_MODEL_VERSION": "1.0",
        "TTS_STANDIN_LOAD_SECONDS": "1.0",
    }
    with served(out, tmp / "server.log", env) as url:
        clicks = _clicks(url, bad_prompt)
    return clicks, out


def _requests(out: Path) -> tuple[list[SpanRecord], list[SpanRecord]]:
    spans = list(from_otlp_json(out / "traces.jsonl"))
    requests = sorted(
        (s for s in spans if s.name == semconv.SPAN_SYNTHESIZE), key=lambda s: s.start_ns
    )
    return spans, requests


def test_each_click_is_one_request_and_its_own_trace_root(
    served_run: tuple[list[Click], Path],
) -> None:
    clicks, out = served_run
    spans, requests = _requests(out)
    assert len(requests) == len(clicks)
    assert all(r.parent_id == "" for r in requests)
    assert len({r.trace_id for r in requests}) == len(clicks)
    # FastAPI's own spans are there, and none of them holds a request.
    foreign = [s for s in spans if not s.name.startswith(semconv.STAGE_SPAN_PREFIX)]
    assert any(s.name.startswith("GET /gradio_api") for s in foreign), {s.name for s in spans}
    request_traces = {r.trace_id for r in requests}
    in_request_traces = [s for s in foreign if s.trace_id in request_traces]
    assert in_request_traces == []
    # Every span of a request's trace is parented inside it and ends within its parent.
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        if span.trace_id in request_traces and span.parent_id:
            parent = by_id[span.parent_id]
            assert parent.start_ns <= span.start_ns
            assert span.end_ns <= parent.end_ns, (span.name, parent.name)


def test_numbers_equal_what_the_clients_got(served_run: tuple[list[Click], Path]) -> None:
    clicks, out = served_run
    _, requests = _requests(out)
    by_characters = {r.attributes[semconv.ATTR_TEXT_CHARACTERS]: r for r in requests}
    assert sorted(by_characters) == sorted(len(c.text) for c in clicks)
    for got in clicks:
        request = by_characters[len(got.text)]
        assert got.started_ns <= request.start_ns
        assert request.end_ns <= got.ended_ns
        waited = float(request.attributes[semconv.ATTR_QUEUE_WAIT])
        assert waited + (request.end_ns - request.start_ns) / 1e9 <= got.seconds
        if got.error is None:
            assert semconv.ATTR_ERROR_TYPE not in request.attributes
            audio = request.attributes[semconv.ATTR_AUDIO_DURATION]
            assert audio == got.samples / got.sample_rate
        else:
            assert "Inference failed" in got.error
            assert request.attributes[semconv.ATTR_ERROR_TYPE] == "gradio.exceptions.Error"
    assert requests_counted(out / "metrics.jsonl") == {"ok": len(clicks) - 1, "error": 1}


def test_model_loading_and_queue_wait_are_seen_apart_from_synthesis(
    served_run: tuple[list[Click], Path],
) -> None:
    _, out = served_run
    spans, requests = _requests(out)
    loads = [s for s in spans if s.name == semconv.stage_span_name(semconv.STAGE_MODEL_LOAD)]
    (load,) = loads  # the lazy model cache loads on the first click only
    first = requests[0]
    assert load.trace_id == first.trace_id
    assert first.start_ns <= load.start_ns
    assert (load.end_ns - load.start_ns) / 1e9 >= 1.0  # TTS_STANDIN_LOAD_SECONDS
    # The first click's real-time factor covers what its user waited for, loading included.
    audio = float(first.attributes[semconv.ATTR_AUDIO_DURATION])
    duration = (first.end_ns - first.start_ns) / 1e9
    assert first.attributes[semconv.ATTR_REAL_TIME_FACTOR] == pytest.approx(duration / audio)
    assert duration >= 1.0
    # Gradio runs one job at a time: of four clicks sent together, the jobs never overlap
    # and the later ones waited in the queue (the client's upload of the prompt comes
    # before that, so the wait is less than the client's own time less the job's).
    together = sorted(requests[1 : 1 + len(TEXTS)], key=lambda r: r.start_ns)
    for before, after in itertools.pairwise(together):
        assert before.end_ns <= after.start_ns
    assert max(float(r.attributes[semconv.ATTR_QUEUE_WAIT]) for r in together) > 0


def test_report_and_trace_show_the_clicks(served_run: tuple[list[Click], Path]) -> None:
    clicks, out = served_run
    cli = str(Path(sys.executable).parent / "tts-otel")
    report = subprocess.run(
        [cli, "report", str(out)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"requests {len(clicks)} (errors 1)" in report
    shown = subprocess.run(
        [cli, "trace", str(out), "--last", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert shown.count("tts.synthesize") == 2
    assert "GET /gradio_api" not in shown
    every = subprocess.run(
        [cli, "trace", str(out), "--last", str(len(clicks))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert every.count("tts.synthesize") == len(clicks)
    assert every.count("queued ") == len(clicks)  # each click's wait, beside its request
    assert every.count("tts.model_load") == 1  # the first click loaded the models
