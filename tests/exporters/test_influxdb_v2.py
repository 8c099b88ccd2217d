"""The v2 API for real: InfluxDB OSS 2.8.0, and influxd 1.8.10's compatibility layer (Flux
on, auth), both built from Go modules (2.8 with its Rust libflux from crates).

Debian's 1.6.7 (tests/exporters/test_influxdb.py, tests/operations/test_collector.py)
has no /api/v2. Here the direct exporter's v2 path (influxdb-client) and the collector's
v2 config (collector/config.yaml) write into each real server, and what lands is read
back with InfluxQL (on 2.8 through a DBRP mapping) and with Flux, which must agree: the
read side may use either.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.exporters.test_influx_faults import assert_partial_writes_counted
from tests.exporters.test_influxdb import (
    _OWN_KEYS,
    _text,
    assert_documented,
    assert_every_span_once_across_a_restart,
)
from tests.operations.test_collector import _configure, _otlp_env, _schema, _spans, otelcol  # noqa: F401
from tests.services import Collector, V2Server, v2_server, wait_for
from tts_otel.exporters.influxdb.line_protocol import line
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.exporters.influxdb.writer import InfluxWriter
from tts_otel.telemetry import set_telemetry

torch = pytest.importorskip("torch")

from tts_otel.reference import TEXTS, ReferencePipeline  # noqa: E402

ROOT = Path(__file__).parent.parent.parent
V2_CONFIG = ROOT / "collector" / "config.yaml"
# Flux columns that describe the query or the table, not the stored point.
_FLUX_META = frozenset({"result", "table", "_start", "_stop", "_measurement"})


@pytest.fixture(params=["2.8", "1.8"], ids=lambda version: f"influxdb-{version}")
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[V2Server]:
    with v2_server(tmp_path / "influx", request.param) as running:
        for database in ("direct", "collector"):
            running.create_database(database)
        yield running


@pytest.fixture(autouse=True)
def _restore_active() -> Iterator[None]:
    yield
    set_telemetry(None)


def _v2_env(monkeypatch: pytest.MonkeyPatch, server: V2Server, database: str) -> None:
    """The v2 settings a user gives: on 2.8 the bucket, org and token of the setup; on 1.8
    bucket ``db/rp``, org ``-``, token ``user:password``."""
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_URL", server.url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_API", "v2")
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_ORG", server.ORG)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_BUCKET", server.bucket(database))
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_TOKEN", server.token)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_EXPORT_DEADLINE", "5")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")


def _workload(requests: int) -> None:
    pipeline = ReferencePipeline(flow_steps=1)
    for index in range(requests):
        pipeline.synthesize(TEXTS[index % 4])


def _point(row: dict[str, Any], time_key: str, skip: frozenset[str]) -> tuple[Any, ...]:
    """One stored point, whichever language read it: time, then (key, value) sorted, no nulls."""
    values = sorted((k, v) for k, v in row.items() if k not in skip and v is not None)
    return (row[time_key], *values)


def _via_influxql(server: V2Server, database: str, measurement: str) -> list[tuple[Any, ...]]:
    rows = server.query(f'SELECT * FROM "{measurement}"', database)
    return sorted(_point(row, "time", frozenset({"time"})) for row in rows)


def _via_flux(server: V2Server, database: str, measurement: str) -> list[tuple[Any, ...]]:
    # One table per series; pivot turns its fields into columns, as InfluxQL's SELECT * shows them.
    rows = server.flux(
        f'from(bucket: "{server.bucket(database)}")'
        " |> range(start: 0)"
        f' |> filter(fn: (r) => r._measurement == "{measurement}")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    return sorted(_point(row, "_time", _FLUX_META | {"_time"}) for row in rows)


def _same_with_both_languages(server: V2Server, database: str, measurement: str) -> int:
    influxql = _via_influxql(server, database, measurement)
    flux = _via_flux(server, database, measurement)
    assert influxql, f"nothing in {database}.{measurement}"
    assert flux == influxql, measurement
    return len(influxql)


def test_the_direct_v2_exporter_lands_and_reads_back_the_same_with_influxql_and_flux(
    server: V2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _v2_env(monkeypatch, server, "direct")
    collected = InMemorySpanExporter()
    telemetry = _configure("influxdb", SimpleSpanProcessor(collected))
    _workload(3)
    telemetry.shutdown()

    sdk = {
        format(s.context.span_id, "016x"): s for s in collected.get_finished_spans() if s.context
    }
    stored = {str(row["span_id"]): row for row in server.query("SELECT * FROM spans", "direct")}
    assert set(stored) == set(sdk)
    for span_id, span in sdk.items():
        assert stored[span_id]["duration_nano"] == span.end_time - span.start_time  # type: ignore[operator]
        assert stored[span_id]["span.name"] == span.name
        assert stored[span_id].get("tts.stage") == (span.attributes or {}).get("tts.stage")

    assert _same_with_both_languages(server, "direct", "spans") == len(sdk)
    for measurement in ("tts.stage.duration", "tts.request.duration", "tts.requests"):
        _same_with_both_languages(server, "direct", measurement)


def test_the_collectors_v2_config_and_the_direct_v2_exporter_write_one_schema(
    otelcol: str,  # noqa: F811 - the fixture imported from test_collector
    server: V2Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """collector/config.yaml end to end: one run down both v2 paths, collector -> db collector."""
    collector = Collector(otelcol, V2_CONFIG, tmp_path, server, "collector")
    collector.env.update(
        TTS_OTEL_INFLUXDB_ORG=server.ORG,
        TTS_OTEL_INFLUXDB_BUCKET=server.bucket("collector"),
        TTS_OTEL_INFLUXDB_TOKEN=server.token,
    )
    collector.start()
    try:
        _otlp_env(monkeypatch, collector)
        _v2_env(monkeypatch, server, "direct")
        collected = InMemorySpanExporter()
        telemetry = _configure("otlp", "influxdb", SimpleSpanProcessor(collected))
        _workload(3)
        telemetry.shutdown()
        expected = len(collected.get_finished_spans())
        via_collector = _spans(server, "collector", expected)
        wait_for(
            lambda: server.query('SELECT * FROM "tts.requests"', "collector"),
            60,
            "metrics via the collector",
        )
    finally:
        collector.stop()

    sent = {format(s.context.span_id, "016x") for s in collected.get_finished_spans() if s.context}
    assert {row["span_id"] for row in via_collector} == sent
    schema = _schema(server, "collector")
    assert schema == _schema(server, "direct")
    for database in ("collector", "direct"):
        _same_with_both_languages(server, database, "spans")
        _same_with_both_languages(server, database, "tts.stage.duration")


def _writer(server: V2Server, **overrides: Any) -> InfluxWriter:
    settings = {
        "url": server.url,
        "org": server.ORG,
        "bucket": server.bucket("direct"),
        "token": server.token,
        "export_deadline_s": 2.0,
        **overrides,
    }
    return InfluxWriter(influx_settings(environ={}, **settings))


def test_a_v2_partial_write_stores_the_rest_and_counts_what_the_server_dropped(
    server: V2Server, caplog: pytest.LogCaptureFixture
) -> None:
    """2.x answers a field type conflict with 422 (1.x: 400), the rest of the batch stored."""
    assert_partial_writes_counted(_writer(server), server, "direct", caplog)


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("token", "not-the-token", "authorization failed"),
        ("bucket", "nope", "not found: check the database (v1) or org and bucket (v2)"),
    ],
)
def test_a_v2_refusal_is_one_clear_warning_and_its_points_are_counted(
    server: V2Server, caplog: pytest.LogCaptureFixture, setting: str, value: str, expected: str
) -> None:
    writer = _writer(server, **{setting: value})
    with caplog.at_level(logging.WARNING):
        for time_ns in (1, 2):
            assert not writer.write([f"m f=1i {time_ns}", f"m f=2i {time_ns + 10}"])
    writer.close()
    assert dict(writer.health())["dropped"] == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert expected in warnings[0]
    assert "not-the-token" not in caplog.text


def test_a_v2_server_killed_and_restarted_stores_every_span_once(
    server: V2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _v2_env(monkeypatch, server, "direct")
    assert_every_span_once_across_a_restart(server, "direct")


_POINT_IDS = itertools.count()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tag=_text, field_key=_text.filter(lambda k: k and k not in _OWN_KEYS), value=_text)
def test_unicode_survives_the_v2_path(
    server: V2Server, tag: str, field_key: str, value: str
) -> None:
    """Arbitrary text through influxdb-client's write and back: as on 1.x's v1 path."""
    writer = _writer(server)
    point_id = str(next(_POINT_IDS))  # one series per example: 2.x's InfluxQL has no DROP
    point = line("prop", {"id": point_id, "t": tag}, {field_key: value, "n": 1}, 1_000)
    assert point is not None
    assert writer.write([point])
    writer.close()
    rows = server.query(f'SELECT * FROM "prop" WHERE "id"=\'{point_id}\'', "direct")
    assert_documented(rows[-1], tag, field_key, value)
