"""The read side's pieces without a server: selections, streaming assembly, the Flux query."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.read import assemble, flux, influxql, waterfall
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import Selection, SelectionError, parse_spec, parse_time, selection

HOUR = 3600 * 10**9


def _trees(count: int, concurrent: int = 4) -> Iterator[SpanRecord]:
    """``count`` requests, ``concurrent`` overlapping at a time, spans in start order."""
    spans = []
    rng = random.Random(5)
    for index in range(count):
        start = index * 100 // concurrent * 10**6
        trace = f"{index:032x}"
        root = SpanRecord(
            trace,
            "tts.synthesize",
            start,
            start + 100 * 10**6,
            {"tts.kv_cache": index % 2 == 0},
            f"{index:08x}ffffffff",
        )
        spans.append(root)
        for stage in range(3):
            begin = start + stage * 30 * 10**6 + rng.randrange(10**6)
            spans.append(
                SpanRecord(
                    trace,
                    f"tts.s{stage}",
                    begin,
                    begin + 20 * 10**6,
                    {"tts.stage": f"s{stage}"},
                    f"{index:08x}{stage:08x}",
                    root.span_id,
                )
            )
    return iter(sorted(spans, key=lambda s: s.start_ns))


def test_streaming_assembly_matches_grouping_and_holds_only_requests_in_flight() -> None:
    streamed = list(assemble.requests(_trees(500), Selection(), ordered=True))
    grouped = list(assemble.requests(_trees(500), Selection(), ordered=False))
    assert len(streamed) == len(grouped) == 500
    key = {r.root.trace_id: r.stage_seconds() for r in grouped}
    assert all(key[r.root.trace_id] == r.stage_seconds() for r in streamed)
    # Each request is handed on before the stream is 10 requests further.
    position = {span.trace_id: i for i, span in enumerate(_trees(500)) if span.parent_id == ""}
    for order, request in enumerate(streamed):
        assert order >= position[request.root.trace_id] // 4 - 10


def test_selection_filters_requests_by_dimension_and_outcome() -> None:
    chosen = Selection(where=(("tts.kv_cache", "true"), ("tts.outcome", "ok")))
    found = list(assemble.requests(_trees(10), chosen, ordered=True))
    assert len(found) == 5


def test_times_and_specs() -> None:
    now = 10 * 24 * HOUR
    assert parse_time("1h", now) == now - HOUR
    assert parse_time("2d", now) == now - 48 * HOUR
    assert parse_time("1970-01-01T01:00:00", now) == HOUR
    assert parse_time("1970-01-01T02:00:00+01:00", now) == HOUR
    spec = parse_spec("2d..1d,model_version=1.1", now)
    assert (spec.since_ns, spec.until_ns) == (now - 48 * HOUR, now - 24 * HOUR)
    assert spec.where == (("tts.model.version", "1.1"),)
    with pytest.raises(SelectionError, match="KEY=VALUE"):
        selection(None, None, ["kv_cache"])


def test_queries_push_the_range_and_tags_to_the_server() -> None:
    settings = influx_settings(environ={}, org="-", bucket="tts/autogen", token="u:p")
    chosen = Selection(since_ns=HOUR, where=(("tts.kv_cache", "true"), ("tts.outcome", "ok")))
    text = flux.query(settings, chosen)
    assert "range(start: 1970-01-01T01:00:00.000000000Z, stop: now())" in text
    assert 'r["tts.kv_cache"] == "true"' in text
    assert "tts.outcome" not in text  # not a tag: filtered on the request
    statement = influxql.statement(influx_settings(environ={}), chosen)
    assert f"time >= {HOUR}" in statement
    assert "\"tts.kv_cache\"::tag = 'true'" in statement
    assert flux.string('a"${b}\\') == '"a\\"\\${b}\\\\"'


def test_waterfall_bars_sit_on_the_request_axis() -> None:
    (request,) = assemble.requests(_trees(1), Selection(), ordered=True)
    lines = waterfall.render([request]).splitlines()
    bars = [line.split("|")[1] for line in lines[2:]]
    assert bars[0] == "█" * waterfall.WIDTH
    assert bars[1].startswith("█")
    assert not bars[3].startswith("█")
    assert waterfall.slowest([request], 1, stage="s1") == [request]


class _FakeInflux(influxql.InfluxQLSource):
    """Answers the lean read's queries (tag values, spans without a stage, one stage's spans)
    from ``_trees``, as influxd would: each in time order, as JSON-shaped chunks."""

    def __init__(self, spans: list[SpanRecord]) -> None:
        super().__init__(influx_settings(environ={}))
        self.spans_stored = spans
        self.queries: list[str] = []

    def _answers(self, query: str) -> Iterator[dict[str, Any]]:
        self.queries.append(query)
        if query.startswith("SHOW TAG VALUES"):
            values = [["tts.stage", f"s{stage}"] for stage in range(3)]
            yield {"results": [{"series": [{"columns": ["key", "value"], "values": values}]}]}
            return
        if "::tag = ''" in query:
            columns = [
                "time",
                "span.name",
                "parent_span_id",
                "duration_nano",
                "end_time_unix_nano",
                "attributes",
                "trace_id",
                "span_id",
            ]
            rows = [
                [
                    s.start_ns,
                    s.name,
                    s.parent_id,
                    s.end_ns - s.start_ns,
                    s.end_ns,
                    '{"tts.kv_cache": true}',
                    s.trace_id,
                    s.span_id,
                ]
                for s in self.spans_stored
                if "tts.stage" not in s.attributes
            ]
        else:
            stage = query.split('"tts.stage"::tag = \'')[1].split("'")[0]
            columns = ["time", "duration_nano", "parent_span_id", "trace_id", "span_id"]
            rows = [
                [s.start_ns, s.end_ns - s.start_ns, s.parent_id, s.trace_id, s.span_id]
                for s in self.spans_stored
                if s.attributes.get("tts.stage") == stage
            ]
        for at in range(0, len(rows), 7):  # small chunks, as influxd's chunked answers
            series = {"name": "spans", "columns": columns, "values": rows[at : at + 7]}
            yield {"results": [{"series": [series]}]}


def test_lean_influxql_read_gives_the_same_requests_in_the_same_order() -> None:
    stored = list(_trees(40))
    source = _FakeInflux(stored)
    lean = list(assemble.requests(source.spans(Selection(), lean=True), Selection(), True))
    whole = list(assemble.requests(iter(stored), Selection(), ordered=True))
    assert [r.root.trace_id for r in lean] == [r.root.trace_id for r in whole]
    assert [r.stage_seconds() for r in lean] == [r.stage_seconds() for r in whole]
    assert all(not child.name for r in lean for child in r.children)  # stage and time only
    assert sum("SELECT" in q for q in source.queries) == 1 + 3  # no stage, then each stage

    source.queries.clear()
    ranked = list(source.spans(Selection(), lean=True, stages=("s1",)))
    assert {s.attributes.get("tts.stage") for s in ranked} == {None, "s1"}
    assert [s.start_ns for s in ranked] == sorted(s.start_ns for s in ranked)
    assert sum("SELECT" in q for q in source.queries) == 2


def test_waterfall_orders_spans_that_start_together_whatever_the_read_order() -> None:
    root = SpanRecord("a" * 32, "tts.synthesize", 0, 100, {}, "r")
    outer = SpanRecord("a" * 32, "tts.acoustic", 10, 60, {}, "o", "r")
    inner = SpanRecord("a" * 32, "tts.acoustic.llm", 10, 40, {}, "i", "r")
    one = waterfall.render([assemble.Request(root, [outer, inner])])
    other = waterfall.render([assemble.Request(root, [inner, outer])])
    assert one == other
    assert one.index("tts.acoustic ") < one.index("tts.acoustic.llm")


def _span(
    name: str,
    start: int,
    end: int,
    span_id: str,
    parent: str = "",
    stage: str | None = None,
    trace: str = "t" * 32,
) -> SpanRecord:
    attributes = {} if stage is None else {"tts.stage": stage}
    return SpanRecord(trace, name, start, end, attributes, span_id, parent)


def _shared_trace() -> list[SpanRecord]:
    """Under one HTTP span: two requests at once, one nested in a stage of the first, a
    stage outside both, a stage whose parent was not stored, and the HTTP client's span
    inside a stage; children at their parent's own start time, read before it."""
    return [
        _span("GET /", 0, 1000, "http"),
        _span("tts.acoustic.llm", 100, 150, "a-llm", "a-ac", "acoustic.llm"),  # before parent
        _span("tts.acoustic", 100, 300, "a-ac", "a", "acoustic"),
        _span("tts.synthesize", 100, 400, "a", "http"),
        _span("tts.synthesize", 120, 500, "b", "http"),
        _span("tts.acoustic", 130, 200, "b-ac", "b", "acoustic"),
        _span("POST vocoder", 140, 160, "client", "b-ac"),
        _span("tts.synthesize", 160, 250, "n", "a-ac"),
        _span("tts.vocoder", 170, 240, "n-voc", "n", "vocoder"),
        _span("tts.speaker_embedding", 600, 700, "prep", "http", "speaker_embedding"),
        _span("tts.vocoder", 420, 480, "lost-1", "gone", "vocoder"),  # only b runs then
        _span("tts.vocoder", 150, 160, "lost-2", "gone", "vocoder"),  # a, b and n run then
        _span("tts.synthesize", 120, 500, "b", "http"),  # exported twice
    ]


@pytest.mark.parametrize("ordered", [True, False])
def test_requests_in_one_trace_are_told_apart_by_parent(ordered: bool) -> None:
    spans = _shared_trace()
    if ordered:
        spans.sort(key=lambda s: s.start_ns)  # a stable sort: the llm span stays first
    else:
        random.Random(3).shuffle(spans)
    outside = assemble.Outside()
    listed = list(assemble.requests(spans, Selection(), ordered, outside))
    assert len(listed) == 3
    found = {r.root.span_id: r for r in listed}
    members = {key: sorted(s.span_id for s in r.children) for key, r in found.items()}
    assert members == {"a": ["a-ac", "a-llm"], "b": ["b-ac", "client", "lost-1"], "n": ["n-voc"]}
    assert found["a"].stage_seconds() == {"acoustic": 200e-9, "acoustic.llm": 50e-9}
    assert outside.stage_spans == 2  # the prompt work, and the lost span no one can claim
    assert found["a"].context is not None
    assert found["a"].context.name == "GET /"
    nested = found["n"].context
    assert nested is not None
    assert nested.span_id == "a"
    drawn = waterfall.render([found["b"]])
    assert "  in GET / (span http: context, not part of the request)" in drawn
    assert "\nGET /" not in drawn
    assert "  GET /" not in drawn.split("\n", 2)[2]
