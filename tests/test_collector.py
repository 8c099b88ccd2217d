"""Through a real OpenTelemetry Collector (otelcol-tts, built from Go modules) into influxd."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tests.services import Collector, InfluxServer, collector_binary, influxdb, wait_for
from tts_otel.exporters.influxdb import DEFAULT_SPAN_DIMENSIONS
from tts_otel.telemetry import Telemetry, set_telemetry

torch = pytest.importorskip("torch")

from tts_otel.reference import TEXTS, ReferencePipeline  # noqa: E402

ROOT = Path(__file__).parent.parent
V1_CONFIG = ROOT / "collector" / "config-influxdb-v1.yaml"
CONFIGS = [ROOT / "collector" / "config.yaml", V1_CONFIG]


@pytest.fixture(scope="module")
def otelcol() -> str:
    return collector_binary()


@pytest.fixture(autouse=True)
def _restore_active() -> Iterator[None]:
    yield
    set_telemetry(None)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(otelcol: str, config: Path) -> None:
    env = {**os.environ, "TTS_OTEL_INFLUXDB_URL": "http://127.0.0.1:8086",
           "TTS_OTEL_INFLUXDB_ORG": "o",
           "TTS_OTEL_INFLUXDB_BUCKET": "b", "TTS_OTEL_INFLUXDB_TOKEN": "t",
           "TTS_OTEL_INFLUXDB_USERNAME": "u", "TTS_OTEL_INFLUXDB_PASSWORD": "p"}  # fmt: skip
    done = subprocess.run(
        [otelcol, "validate", "--config", str(config)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_collector_span_dimensions_are_the_direct_exporters(otelcol: str) -> None:
    for config in CONFIGS:
        dimensions = yaml.safe_load(config.read_text())["exporters"]["influxdb"]["span_dimensions"]
        assert set(dimensions) == DEFAULT_SPAN_DIMENSIONS, config.name
    components = subprocess.run([otelcol, "components"], capture_output=True, text=True).stdout
    for name in (
        "otlp",
        "batch",
        "memory_limiter",
        "influxdb",
        "prometheus",
        "debug",
        "file_storage",
        "health_check",
    ):
        assert name in components


@pytest.fixture
def stack(otelcol: str, tmp_path: Path) -> Iterator[tuple[InfluxServer, Collector]]:
    with influxdb(tmp_path / "influx") as server:
        for database in ("collector", "direct"):
            server.create_database(database)
        collector = Collector(otelcol, V1_CONFIG, tmp_path, server, "collector")
        collector.start()
        try:
            yield server, collector
        finally:
            collector.stop()


def _otlp_env(monkeypatch: pytest.MonkeyPatch, collector: Collector) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.http}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")


def _configure(*exporters: str | SpanProcessor) -> Telemetry:
    return tts_otel.configure(
        service_name="tts-collector",
        exporters=list(exporters),
        set_global=False,
        nvml=False,
        cuda=None,
    )


REQUESTS_ONLY = "WHERE \"span.name\"='tts.synthesize'"


def _spans(
    server: InfluxServer, database: str, expected: int, where: str = ""
) -> list[dict[str, object]]:
    def arrived() -> list[dict[str, object]] | None:
        rows = server.query(f"SELECT * FROM spans {where}", database)
        return rows if len(rows) >= expected else None

    return wait_for(arrived, 90, f"{expected} spans in {database} {where}")


def test_a_run_reaches_influxdb_and_prometheus_through_the_collector(
    stack: tuple[InfluxServer, Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, collector = stack
    _otlp_env(monkeypatch, collector)
    collected = InMemorySpanExporter()
    telemetry = _configure("otlp", SimpleSpanProcessor(collected))
    pipeline = ReferencePipeline(flow_steps=1)
    for text in TEXTS[:3]:
        pipeline.synthesize(text)
    telemetry.shutdown()

    sdk = {
        format(s.context.span_id, "016x"): s for s in collected.get_finished_spans() if s.context
    }
    stored = {str(row["span_id"]): row for row in _spans(server, "collector", len(sdk))}
    assert set(stored) == set(sdk)
    for span_id, span in sdk.items():
        assert stored[span_id]["duration_nano"] == span.end_time - span.start_time  # type: ignore[operator]
        assert stored[span_id].get("tts.stage") == (span.attributes or {}).get("tts.stage")

    def metrics_landed() -> bool:
        return bool(server.query('SELECT * FROM "tts.stage.duration"', "collector"))

    wait_for(metrics_landed, 60, "stage histograms in InfluxDB")
    import urllib.request

    def scraped() -> str | None:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{collector.prometheus}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        return text if "tts_stage_duration_seconds_bucket{" in text else None

    page = wait_for(scraped, 30, "the collector's prometheus endpoint")
    assert 'tts_stage="vocoder"' in page
    assert 'le="2.5"' in page


def _schema(server: InfluxServer, database: str) -> dict[str, dict[str, object]]:
    schema: dict[str, dict[str, object]] = {}
    for row in server.query("SHOW MEASUREMENTS", database):
        name = str(row["name"])
        quoted = '"' + name + '"'
        schema[name] = {
            "tags": {
                str(r["tagKey"]) for r in server.query(f"SHOW TAG KEYS FROM {quoted}", database)
            },
            "fields": {
                str(r["fieldKey"]): r["fieldType"]
                for r in server.query(f"SHOW FIELD KEYS FROM {quoted}", database)
            },
        }
    return schema


def test_both_paths_write_the_same_schema(
    stack: tuple[InfluxServer, Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run exported down both paths at once: collector -> db collector, direct -> db direct."""
    server, collector = stack
    _otlp_env(monkeypatch, collector)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_URL", server.url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_DB", "direct")
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_USERNAME", server.USER)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_PASSWORD", server.PASSWORD)
    collected = InMemorySpanExporter()
    telemetry = _configure("otlp", "influxdb", SimpleSpanProcessor(collected))
    pipeline = ReferencePipeline(flow_steps=1)
    for text in TEXTS[:3]:
        pipeline.synthesize(text)
    telemetry.shutdown()
    expected = len(collected.get_finished_spans())
    _spans(server, "collector", expected)
    _spans(server, "direct", expected)
    wait_for(
        lambda: server.query('SELECT * FROM "tts.requests"', "collector"),
        60,
        "metrics via the collector",
    )

    via_collector, direct = _schema(server, "collector"), _schema(server, "direct")
    assert set(via_collector) == set(direct)
    for measurement in direct:
        assert via_collector[measurement] == direct[measurement], measurement

    def per_stage(database: str) -> dict[str, object]:
        rows = server.query(
            'SELECT sum("duration_nano"), count("duration_nano") FROM spans GROUP BY "tts.stage"',
            database,
        )
        return {str(r.get("tts.stage", "")): (r["sum"], r["count"]) for r in rows}

    assert per_stage("collector") == per_stage("direct")


def test_persistent_queue_survives_sigkill_while_influxdb_is_down(
    stack: tuple[InfluxServer, Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, collector = stack
    _otlp_env(monkeypatch, collector)
    server.kill()
    collected = InMemorySpanExporter()
    telemetry = _configure("otlp", SimpleSpanProcessor(collected))
    pipeline = ReferencePipeline(flow_steps=1)
    requests = 4
    for index in range(requests):
        pipeline.synthesize(TEXTS[index])
    telemetry.shutdown()  # the collector has accepted them
    # The batch processor holds data in memory for up to its 200 ms timeout
    # before the exporter's disk queue takes it (see the README): let it pass.
    time.sleep(1.0)
    collector.kill()  # SIGKILL
    collector.start()
    server.start()
    rows = _spans(server, "collector", requests, REQUESTS_ONLY)
    sent = {format(s.context.trace_id, "032x") for s in collected.get_finished_spans() if s.context}
    assert {row["trace_id"] for row in rows} == sent
