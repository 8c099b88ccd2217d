"""Serialising spans to line protocol: tts-otel's module against influxdb-client's Point.

Both sides start from the same SDK spans and write the same schema (the
collector's ``spans`` measurement, the same tags and fields). The Point side
is what one writes with influxdb-client: json.dumps for the attribute JSON,
Point for the rest. tts-otel's side encodes each batch's shared resource
attributes once and scalars with the C string encoder.
Rounds alternate in one process. Then spans per second written end to end
into a real influxd (Debian's, started here on a free loopback port).

Last line: ``serialize_ratio=<ours/theirs throughput>`` (target >= 3).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from influxdb_client.client.write.point import Point
from opentelemetry.sdk.trace import ReadableSpan

sys.path.insert(0, str(Path(__file__).parent.parent))

import tts_otel
from tts_otel.exporters.influxdb.line_protocol import tag_value
from tts_otel.exporters.influxdb.settings import DEFAULT_SPAN_DIMENSIONS, influx_settings
from tts_otel.exporters.influxdb.spans import span_lines
from tts_otel.exporters.influxdb.writer import InfluxWriter
from tts_otel.testing import capture


def make_spans(requests: int) -> list[ReadableSpan]:
    with capture() as cap:
        for index in range(requests):
            with tts_otel.synthesis(
                model="glm-tts", sample_rate=24000, kv_cache=True, text="语音" * index
            ) as req:
                for stage in ("speaker_embedding", "text_normalization", "acoustic", "vocoder"):
                    with req.stage(stage):
                        pass
                req.audio(samples=24000)
        return cap.spans()


def with_point(spans: Sequence[ReadableSpan], dimensions: frozenset[str]) -> list[str]:
    """The same schema built with influxdb-client's Point."""
    lines = []
    for span in spans:
        assert span.context is not None
        assert span.start_time is not None
        assert span.end_time is not None
        point = Point("spans").time(span.start_time)  # type: ignore[no-untyped-call]
        point.tag("trace_id", format(span.context.trace_id, "032x"))
        point.tag("span_id", format(span.context.span_id, "016x"))
        merged: dict[str, Any] = {}
        for attributes in (span.resource.attributes, span.attributes or {}):
            for key, value in attributes.items():
                if key in dimensions:
                    point.tag(key, tag_value(value))
                else:
                    merged[key] = value
        point.field("attributes", json.dumps(merged, sort_keys=True, separators=(",", ":")))
        if span.parent is not None:
            point.field("parent_span_id", format(span.parent.span_id, "016x"))
        point.field("span.name", span.name)
        point.field("span.kind", "Internal")
        point.field("end_time_unix_nano", span.end_time)
        point.field("duration_nano", span.end_time - span.start_time)
        lines.append(point.to_line_protocol())
    return lines


def throughput(run: Any, spans: Sequence[ReadableSpan], rounds: int) -> list[float]:
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(spans)
        rates.append(len(spans) / (time.perf_counter() - start))
    return rates


def main() -> None:
    spans = make_spans(400)  # 2000 spans
    dims = DEFAULT_SPAN_DIMENSIONS

    def ours(batch: Sequence[ReadableSpan]) -> list[str]:
        return list(span_lines(batch, dims))

    def theirs(batch: Sequence[ReadableSpan]) -> list[str]:
        return with_point(batch, dims)

    ours(spans), theirs(spans)  # warm up
    ours_rates: list[float] = []
    theirs_rates: list[float] = []
    for _ in range(5):
        ours_rates += throughput(ours, spans, 2)
        theirs_rates += throughput(theirs, spans, 2)
    ours_rate, theirs_rate = statistics.median(ours_rates), statistics.median(theirs_rates)
    print(
        f"serialise {len(spans)} spans: tts-otel {ours_rate:,.0f} spans/s, "
        f"influxdb-client Point {theirs_rate:,.0f} spans/s"
    )

    from tests.services import influxdb

    with tempfile.TemporaryDirectory() as tmp, influxdb(Path(tmp)) as server:
        server.create_database("bench")
        settings = influx_settings(
            environ={}, url=server.url, db="bench", username=server.USER, password=server.PASSWORD
        )
        writer = InfluxWriter(settings)
        lines = ours(spans)
        start = time.perf_counter()
        for offset in range(0, len(lines), 500):
            assert writer.write(lines[offset : offset + 500])
        seconds = time.perf_counter() - start
        writer.close()
        print(
            f"end to end into influxd {server.url}: {len(lines) / seconds:,.0f} spans/s "
            f"(batches of 500, gzip, one connection per batch)"
        )
    print(f"serialize_ratio={ours_rate / theirs_rate:.2f}")


if __name__ == "__main__":
    main()
