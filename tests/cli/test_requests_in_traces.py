"""A request is a ``tts.synthesize`` span and its subtree, wherever it sits in its trace:
``report``, ``trace``, ``compare`` and ``--html`` on spans that the real SDK wrote inside other
instrumentation's spans (issue 19), checked against the raw file counted without the read side.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

import tts_otel
from tests.cli.foreign_shape import (
    REQUESTS,
    SENTENCE_COUNT,
    SENTENCES,
    STARTUP,
    VOCODER_CALL,
    Truth,
    store_foreign,
    truth,
)
from tts_otel import cli, semconv
from tts_otel.read import assemble, summary
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import Selection
from tts_otel.telemetry import set_telemetry

_BAR = re.compile(r"^(\s*)(\S.*?)\s+[\d.]+ ms \|")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    out = tmp_path_factory.mktemp("foreign") / "out"
    store_foreign(out, ["file"])
    return out, truth(out / "traces.jsonl")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _row(report: str, stage: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.strip().split()[:1] == [stage])
    return line.split()


def test_report_counts_every_synthesize_span_once(
    written: tuple[Path, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    out, true = written
    assert true.requests == REQUESTS
    assert len(true.traces) < true.requests  # several requests in a trace
    report = _run(capsys, "report", str(out))
    assert (
        f"requests {true.requests} (errors {true.errors})   audio {true.audio_seconds:.1f} s   "
        f"processing {true.processing_seconds:.1f} s" in report
    )
    assert true.errors == 1
    for stage in ("speaker_embedding", "acoustic", "acoustic.llm", "vocoder"):
        per_request = [totals[stage] for totals in true.stages.values() if stage in totals]
        row = _row(report, stage)
        assert row[1] == f"{statistics.median(per_request) * 1000:.1f}", (stage, report)
        share = sum(per_request) / true.processing_seconds
        assert row[4] == f"{share:.1%}", (stage, report)
        assert share < 1
    assert true.outside == 1
    assert "1 stage span outside any request (no tts.synthesize span above it)" in report


def test_nested_stages_print_under_their_own_parent(
    written: tuple[Path, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    report = _run(capsys, "report", str(written[0]))
    names = [line.split()[0] for line in report.splitlines()[2:8]]
    assert names == [
        "speaker_embedding",
        "speaker_embedding.spk_embedding",
        "text_normalization",
        "acoustic",
        "acoustic.llm",
        "vocoder",
    ]
    assert "\n  speaker_embedding.spk_embedding " in report
    assert summary.ordered_stages(
        [
            "z",
            "vocoder",
            "acoustic.flow",
            "acoustic",
            "b.x",
            "b",
            "acoustic.llm",
            "speaker_embedding.x",
        ]
    ) == [
        "speaker_embedding.x",
        "acoustic",
        "acoustic.llm",
        "acoustic.flow",
        "vocoder",
        "b",
        "b.x",
        "z",
    ]


def _waterfalls(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n")]


def test_trace_draws_each_request_as_its_own_tree(
    written: tuple[Path, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    out, true = written
    drawn = _waterfalls(_run(capsys, "trace", str(out), "--last", str(REQUESTS)))
    assert len(drawn) == true.requests
    seen = set()
    for lines in drawn:
        span_id = lines[0].split()[3]
        seen.add(span_id)
        bars = [_BAR.match(line) for line in lines]
        named = [(len(m.group(1)), m.group(2)) for m in bars if m]
        assert named[0] == (0, semconv.SPAN_SYNTHESIZE)
        assert all(depth > 0 for depth, _ in named[1:])  # one tree under the request's span
        assert len(named) == true.members[span_id], lines
        assert not any(name in (STARTUP, SENTENCES) for _, name in named)
        assert (VOCODER_CALL in {name for _, name in named}) == (
            true.members[span_id] == max(true.members.values())
        )
    assert seen == set(true.roots)
    context = [line for lines in drawn for line in lines if line.startswith("  in ")]
    assert sum(f"in {SENTENCES} (span " in line for line in context) == SENTENCE_COUNT
    # The clicks under the ended HTTP span: said as context (or, where the instrumentation
    # makes each click a root, not at all), never drawn as part of a request.
    assert all("ended" in line for line in context if STARTUP in line)


def test_trace_by_id_shows_every_request_of_the_trace(
    written: tuple[Path, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _true = written
    per_trace: dict[str, int] = {}
    for line in _run(capsys, "trace", str(out), "--last", str(REQUESTS)).splitlines():
        if line.startswith("trace "):
            per_trace[line.split()[1]] = per_trace.get(line.split()[1], 0) + 1
    shared = max(per_trace, key=per_trace.__getitem__)
    assert per_trace[shared] > 1
    shown = _run(capsys, "trace", shared, str(out))
    assert shown.count(f"trace {shared}  span ") == per_trace[shared]


def test_compare_counts_requests_on_each_side(
    written: tuple[Path, Truth], capsys: pytest.CaptureFixture[str]
) -> None:
    out, true = written
    cached = sum(bool(a.get(semconv.ATTR_KV_CACHE)) for a in true.roots.values())
    text = _run(capsys, "compare", "kv_cache=true", "kv_cache=false", str(out), "--resamples", "50")
    assert f"A: kv_cache=true ({cached} requests)" in text
    assert f"B: kv_cache=false ({true.requests - cached} requests)" in text


def test_html_counts_and_draws_requests(
    written: tuple[Path, Truth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotly")
    out, true = written
    page = tmp_path / "report.html"
    _run(capsys, "report", str(out), "--html", str(page))
    text = page.read_text(encoding="utf-8")
    spans = sum(true.members.values())
    assert f"{spans:,} spans, {true.requests} requests ({true.errors} failed)" in text
    assert "1 stage span outside any request" in text
    from tts_otel.read.html._aggregate import Aggregate

    data = Aggregate(slowest=REQUESTS)
    for request in assemble.requests(_records(out), Selection(), ordered=False):
        data.add(request)
    kept = data.slowest.slowest_first()
    assert sorted(len(spans) for spans in kept) == sorted(true.members.values())


def _records(out: Path) -> list[SpanRecord]:
    from tts_otel.read.records import from_otlp_json

    return list(from_otlp_json(out / "traces.jsonl"))


def test_stage_spans_without_a_request_are_said_not_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = tts_otel.configure(
        service_name="tts-orphans",
        exporters=["file"],
        output_dir=tmp_path,
        set_global=False,
        nvml=False,
        cuda=None,
        flush_on_signals=False,
    )
    try:
        with tts_otel.stage(semconv.STAGE_SPEAKER_EMBEDDING):
            with tts_otel.stage("speaker_embedding.spk_embedding"):
                pass
    finally:
        telemetry.shutdown()
        set_telemetry(None)
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no requests in" in err
    assert "(2 stage spans outside any request (no tts.synthesize span above them)" in err
