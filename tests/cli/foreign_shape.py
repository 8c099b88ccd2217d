"""Requests inside other instrumentation's spans, as a served web UI or a voice-agent session
makes them, written with the real SDK; and what the raw OTLP JSON says, counted here without
the read side (span names, parent ids and attributes, nothing else).

The shapes (issue 19): a warm-up click and then four at once, all under an HTTP span that
ended before any of them began (gradio's queue worker inherits ``startup-events``' context);
one live HTTP request holding three sentences, one of which fails, with prompt work done
outside any request and a client call of the vocoder's inside one; and one request that is
its own root. A request may also end up a root with a link to the ended span (the
instrumentation's own fix): the counts here hold for both.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry import context, trace

import tts_otel
from tts_otel import semconv
from tts_otel.telemetry import Telemetry

HTTP_SCOPE = "opentelemetry.instrumentation.asgi"
STARTUP = "GET /gradio_api/startup-events"
SENTENCES = "POST /tts"
VOCODER_CALL = "POST http://vocoder/v1/wav"
CLICKS = 5
SENTENCE_COUNT = 3
REQUESTS = CLICKS + SENTENCE_COUNT + 1


def _synthesize(
    telemetry: Telemetry, index: int, fail: bool = False, client: trace.Tracer | None = None
) -> None:
    with tts_otel.synthesis(
        model="glm-tts",
        model_version="1.1",
        kv_cache=index % 2 == 0,
        sample_rate=24_000,
        text="你好。Hello there.",
        telemetry=telemetry,
    ) as request:
        with request.stage(semconv.STAGE_SPEAKER_EMBEDDING):
            with request.stage("speaker_embedding.spk_embedding"):
                time.sleep(0.002)
        with request.stage(semconv.STAGE_TEXT_NORMALIZATION):
            time.sleep(0.001)
        with request.stage(semconv.STAGE_ACOUSTIC):
            with request.stage(semconv.STAGE_ACOUSTIC_LLM):
                time.sleep(0.004 + 0.001 * index)
            if fail:
                raise RuntimeError("out of memory")
        with request.stage(semconv.STAGE_VOCODER):
            if client is None:
                time.sleep(0.002)
            else:  # a remote vocoder: another library's client span inside the stage
                with client.start_as_current_span(VOCODER_CALL, kind=trace.SpanKind.CLIENT):
                    time.sleep(0.002)
        request.audio(seconds=1.0 + 0.125 * index)


def foreign_workload(telemetry: Telemetry) -> None:
    http = telemetry.tracer_provider.get_tracer(HTTP_SCOPE)
    index = iter(range(REQUESTS))
    # The queue worker's context: a span that has ended before the clicks it parents.
    with http.start_as_current_span(STARTUP, kind=trace.SpanKind.SERVER):
        worker = context.get_current()
    time.sleep(0.01)

    def click(number: int) -> None:
        token = context.attach(worker)
        try:
            _synthesize(telemetry, number)
        finally:
            context.detach(token)

    click(next(index))  # the warm-up
    clients = [threading.Thread(target=click, args=(next(index),)) for _ in range(CLICKS - 1)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()

    # One web request per sentence list: prompt work outside any request, then the sentences.
    with http.start_as_current_span(SENTENCES, kind=trace.SpanKind.SERVER):
        with tts_otel.stage(semconv.STAGE_SPEAKER_EMBEDDING):
            time.sleep(0.003)
        for sentence in range(SENTENCE_COUNT):
            number = next(index)
            if sentence == 1:
                with pytest.raises(RuntimeError, match="out of memory"):
                    _synthesize(telemetry, number, fail=True)
            else:
                _synthesize(telemetry, number, client=http if sentence == 2 else None)
    _synthesize(telemetry, next(index))


def store_foreign(output_dir: Path, exporters: list[str]) -> None:
    telemetry = tts_otel.configure(
        service_name="tts-web",
        exporters=exporters,
        output_dir=output_dir,
        set_global=False,
        nvml=False,
        cuda=None,
        flush_on_signals=False,
    )
    try:
        foreign_workload(telemetry)
    finally:
        telemetry.shutdown()
        tts_otel.telemetry.set_telemetry(None)


@dataclass
class Truth:
    """Counted from the raw file: each ``tts.synthesize`` span, its audio, and the time of
    each stage span summed on its nearest ``tts.synthesize`` ancestor."""

    requests: int = 0
    errors: int = 0
    audio_seconds: float = 0.0
    processing_seconds: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    outside: int = 0  # stage spans with no tts.synthesize ancestor
    traces: set[str] = field(default_factory=set)
    roots: dict[str, dict[str, object]] = field(default_factory=dict)  # span id -> attributes
    members: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # spans, root too


def _raw_spans(path: Path) -> Iterator[dict[str, object]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                yield from scope["spans"]


def _attribute(span: dict[str, object], key: str) -> object:
    for item in span.get("attributes", []):  # type: ignore[attr-defined]
        if item["key"] == key:
            return next(iter(item["value"].values()))
    return None


def truth(path: Path) -> Truth:
    spans = {(s["traceId"], s["spanId"]): s for s in _raw_spans(path)}
    found = Truth()
    for span in spans.values():
        if span["name"] != semconv.SPAN_SYNTHESIZE:
            continue
        found.requests += 1
        found.traces.add(str(span["traceId"]))
        found.roots[str(span["spanId"])] = {
            item["key"]: next(iter(item["value"].values()))
            for item in span.get("attributes", [])  # type: ignore[attr-defined]
        }
        found.errors += _attribute(span, semconv.ATTR_ERROR_TYPE) is not None
        found.audio_seconds += float(_attribute(span, semconv.ATTR_AUDIO_DURATION) or 0.0)  # type: ignore[arg-type]
        found.processing_seconds += (
            int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])  # type: ignore[call-overload]
        ) / 1e9
    for span in spans.values():
        ancestor: dict[str, object] | None = span
        while ancestor is not None and ancestor["name"] != semconv.SPAN_SYNTHESIZE:
            ancestor = spans.get((ancestor["traceId"], ancestor.get("parentSpanId", "")))
        stage = _attribute(span, semconv.ATTR_STAGE)
        if ancestor is not None:
            found.members[str(ancestor["spanId"])] += 1
        if stage is None:
            continue
        if ancestor is None:
            found.outside += 1
            continue
        totals = found.stages[str(ancestor["spanId"])]
        seconds = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e9  # type: ignore[call-overload]
        totals[str(stage)] = totals.get(str(stage), 0.0) + seconds
    return found
