"""The pure line-protocol module: escaping, bad values, and the collector's schema."""

from __future__ import annotations

import json
import math
import re

import pytest

import tts_otel
from tts_otel.exporters.influxdb.line_protocol import (
    MAX_STRING_BYTES,
    REPLACEMENT,
    go_float,
    go_json,
    line,
)
from tts_otel.exporters.influxdb.metrics import metric_lines
from tts_otel.exporters.influxdb.spans import span_lines
from tts_otel.testing import TelemetryCapture


def test_escaping_follows_the_reference() -> None:
    point = line("cpu load,x", {"host name": "a,b=c"}, {"field key": 'say "hi" \\ ok'}, 7)
    assert point == 'cpu\\ load\\,x,host\\ name=a\\,b\\=c field\\ key="say \\"hi\\" \\\\ ok" 7'


@pytest.mark.parametrize(
    ("value", "rendered"),
    [(True, "true"), (3, "3i"), (-3, "-3i"), (0.5, "0.5"), (2.0, "2.0"), (1e-07, "1e-07")],
)
def test_field_types(value: object, rendered: str) -> None:
    assert line("m", {}, {"f": value}, 1) == f"m f={rendered} 1"  # type: ignore[dict-item]


def test_nan_inf_and_empty_are_dropped_and_an_empty_point_is_none() -> None:
    assert line("m", {"t": ""}, {"a": math.nan, "b": math.inf, "c": 1.5}, 1) == "m c=1.5 1"
    assert line("m", {}, {"a": math.nan}, 1) is None
    assert line("m", {}, {"time": 1, "_field": 2, "": 3}, 1) is None


def test_control_characters_and_lone_surrogates_cannot_break_a_batch() -> None:
    point = line("m", {"t": "a\nb\\"}, {"s": "x\ud800y\r\n", "k\tey": 1}, 1)
    assert point is not None
    assert "\n" not in point
    assert "\r" not in point
    assert point.encode("utf-8")  # valid UTF-8
    assert f"t=a{REPLACEMENT}b{REPLACEMENT}" in point
    assert f'"x{REPLACEMENT}y{REPLACEMENT}{REPLACEMENT}"' in point


def test_string_fields_are_capped_at_64_kib_on_a_character_boundary() -> None:
    point = line("m", {}, {"s": "语" * MAX_STRING_BYTES}, 1)
    assert point is not None
    value = point.split('s="')[1].rsplit('" ', 1)[0]
    assert len(value.encode("utf-8")) <= MAX_STRING_BYTES
    assert len(value.encode("utf-8")) > MAX_STRING_BYTES - 3


@pytest.mark.parametrize(
    ("value", "go"),
    [
        (1.0, "1"),
        (600.0, "600"),
        (0.005, "0.005"),
        (2.5, "2.5"),
        (0.00001, "0.00001"),
        (1e21, "1e+21"),
    ],
)
def test_go_float_formatting(value: float, go: str) -> None:
    assert go_float(value) == go


def test_go_json_sorts_keys_escapes_html_and_writes_go_floats() -> None:
    text = go_json({"b": 2.0, "a": "<x & y>", "c": [1.5, True], "语": "音"})
    assert text == '{"a":"\\u003cx \\u0026 y\\u003e","b":2,"c":[1.5,true],"语":"音"}'
    assert json.loads(text)["a"] == "<x & y>"


def test_spans_carry_dimensions_as_tags_and_the_rest_as_json(cap: TelemetryCapture) -> None:
    def failing_request() -> None:
        with tts_otel.synthesis(model="m", sample_rate=24000, text="hi") as req:
            with req.stage("vocoder"):
                raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing_request()
    lines = list(span_lines(cap.spans(), frozenset({"service.name", "tts.stage"})))
    spans = [point for point in lines if point.startswith("spans,")]
    logs = [point for point in lines if point.startswith("logs,")]
    assert len(spans) == 2
    assert len(logs) == 2  # the exception event on each span
    vocoder = next(point for point in spans if "tts.stage=vocoder" in point)
    assert ',span.name="tts.vocoder"' in vocoder
    assert 'otel.status_code="Error"' in vocoder
    assert 'otel.status_description="ValueError"' in vocoder
    assert 'span.kind="Internal"' in vocoder
    assert "duration_nano=" in vocoder
    assert "parent_span_id=" in vocoder
    assert "tts.sample_rate" not in vocoder.split(" ")[0]  # not a dimension: in the JSON
    assert '\\"tts.sample_rate\\":24000' in vocoder
    assert 'event.name="exception"' in logs[0]


def test_histograms_are_cumulative_with_go_bound_keys(cap: TelemetryCapture) -> None:
    for _ in range(3):
        with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
            pass
    data = cap.metrics_data()
    assert data is not None
    stage = next(p for p in metric_lines(data) if p.startswith("tts.stage.duration,"))
    fields = dict(item.split("=", 1) for item in stage.split(" ")[1].split(","))
    assert fields["count"] == "3.0"
    assert fields["0.005"] == fields["600"] == fields["+Inf"] == "3.0"
    assert "1.0" not in fields  # Go writes the bound 1 as "1"
    assert fields["1"] == "3.0"
    assert fields["start_time_unix_nano"].endswith("i")
    counter = next(p for p in metric_lines(data) if p.startswith("tts.requests,"))
    assert "counter=3i" in counter
    assert "otel.library.name=tts_otel" in counter


def test_span_attributes_win_over_resource_attributes_in_the_json() -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"deployment": "prod", "region": "eu"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    tracer.start_span("a", attributes={"deployment": "canary", "z": 1}).end()
    tracer.start_span("b", attributes={"y": 2}).end()
    points = list(span_lines(exporter.get_finished_spans(), frozenset()))
    # The field is a line-protocol string; its escapes (\\" and \\\\) are JSON's too.
    quoted = [re.search(r'attributes=("(?:[^"\\]|\\.)*")', p) for p in points]
    texts = [json.loads(match.group(1)) for match in quoted if match]
    assert texts[0].count('"deployment"') == 1
    assert json.loads(texts[0]) == {"deployment": "canary", "region": "eu", "z": 1}
    assert json.loads(texts[1]) == {"deployment": "prod", "region": "eu", "y": 2}
    assert texts[1] == '{"deployment":"prod","region":"eu","y":2}'  # sorted, compact


def test_spans_built_without_the_sdks_bounded_attributes_serialise_the_same(
    cap: TelemetryCapture,
) -> None:
    from opentelemetry.sdk.trace import ReadableSpan

    with tts_otel.synthesis(model="m", sample_rate=24000, text="hi") as req:
        with req.stage("vocoder"):
            pass
    sdk_spans = cap.spans()
    # Another SDK version or a hand-made span: attributes in a plain dict.
    plain = [
        ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=dict(span.attributes or {}),
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        for span in sdk_spans
    ]
    dimensions = frozenset({"service.name", "tts.stage", "tts.model.name"})
    expected = list(span_lines(sdk_spans, dimensions))
    assert "tts.stage=vocoder" in "".join(expected)
    assert list(span_lines(plain, dimensions)) == expected
