"""Through a real OpenTelemetry Collector (otelcol-tts, built from Go modules) into influxd."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tests.services import (
    Collector,
    InfluxQLServer,
    InfluxServer,
    collector_binary,
    influxdb,
    running,
    wait_for,
)
from tts_otel.exporters.influxdb.settings import DEFAULT_SPAN_DIMENSIONS
from tts_otel.telemetry import Telemetry, set_telemetry

ROOT = Path(__file__).parent.parent.parent
V1_CONFIG = ROOT / "collector" / "config-influxdb-v1.yaml"
CONFIGS = [ROOT / "collector" / "config.yaml", V1_CONFIG]
AUTH = ROOT / "collector" / "auth.yaml"
HOST = ROOT / "collector" / "host.yaml"


@pytest.fixture(scope="module")
def otelcol() -> str:
    return collector_binary()


@pytest.fixture(autouse=True)
def _restore_active() -> Iterator[None]:
    yield
    set_telemetry(None)


VALIDATE_ENV = {
    "TTS_OTEL_INFLUXDB_URL": "http://127.0.0.1:8086",
    "TTS_OTEL_INFLUXDB_ORG": "o",
    "TTS_OTEL_INFLUXDB_BUCKET": "b",
    "TTS_OTEL_INFLUXDB_TOKEN": "t",
    "TTS_OTEL_INFLUXDB_USERNAME": "u",
    "TTS_OTEL_INFLUXDB_PASSWORD": "p",
}


def _validate(otelcol: str, *configs: Path, **env: str) -> subprocess.CompletedProcess[str]:
    flags = [flag for config in configs for flag in ("--config", str(config))]
    return subprocess.run(
        [otelcol, "validate", *flags],
        env={**os.environ, **VALIDATE_ENV, **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(otelcol: str, config: Path) -> None:
    done = _validate(otelcol, config)
    assert done.returncode == 0, done.stdout + done.stderr
    # TLS and authentication: each turned on by its variables, refused without its secrets.
    tls = {"OTELCOL_OTLP_TLS_ENABLED": "true"}
    done = _validate(otelcol, config, **tls)
    assert "must include both certificate and key" in done.stderr
    done = _validate(
        otelcol,
        config,
        **tls,
        OTELCOL_OTLP_TLS_CERT_FILE="c.pem",
        OTELCOL_OTLP_TLS_KEY_FILE="k.pem",
    )
    assert done.returncode == 0, done.stderr
    done = _validate(otelcol, config, AUTH, OTELCOL_OTLP_BEARER_TOKEN="s3cret")
    assert done.returncode == 0, done.stderr
    assert "no bearer token provided" in _validate(otelcol, config, AUTH).stderr
    done = _validate(
        otelcol, config, AUTH, HOST, OTELCOL_OTLP_BEARER_TOKEN="t", OTELCOL_HOST_NAME="node-1"
    )
    assert done.returncode == 0, done.stderr


def _default(value: str) -> str:
    """The default of a ``${env:NAME:-default}`` setting."""
    match = re.fullmatch(r"\$\{env:\w+:-(.*)\}", value)
    assert match, value
    return match[1]


def test_the_configs_batch_in_the_exporter_queue_and_differ_only_in_credentials() -> None:
    v2, v1 = (yaml.safe_load(config.read_text()) for config in CONFIGS)
    for config in (v1, v2):
        # The batch processor is deprecated and held data in memory in front of the disk queue.
        assert "batch" not in config["processors"]
        for pipeline in config["service"]["pipelines"].values():
            assert not {"batch"} & set(pipeline["processors"])
            assert pipeline["processors"][0] == "memory_limiter"
        queue = config["exporters"]["influxdb"]["sending_queue"]
        assert queue["storage"] == "file_storage/queue"
        assert queue["batch"]["sizer"] == "items"
        # 9464 is the in-process endpoint's port: a collector beside the service must not take it.
        endpoint = _default(config["exporters"]["prometheus"]["endpoint"])
        assert not endpoint.endswith(":9464")
    for key in ("org", "bucket", "token"):
        del v2["exporters"]["influxdb"][key]
    del v1["exporters"]["influxdb"]["v1_compatibility"]
    assert v1 == v2


def test_collector_span_dimensions_are_the_direct_exporters(otelcol: str) -> None:
    for config in CONFIGS:
        dimensions = yaml.safe_load(config.read_text())["exporters"]["influxdb"]["span_dimensions"]
        assert set(dimensions) == DEFAULT_SPAN_DIMENSIONS, config.name
    components = subprocess.run([otelcol, "components"], capture_output=True, text=True).stdout
    for name in (
        "otlp",
        "memory_limiter",
        "resource",
        "influxdb",
        "prometheus",
        "debug",
        "file_storage",
        "health_check",
        "bearertokenauth",
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
    server: InfluxQLServer, database: str, expected: int, where: str = ""
) -> list[dict[str, object]]:
    def arrived() -> list[dict[str, object]] | None:
        rows = server.query(f"SELECT * FROM spans {where}", database)
        return rows if len(rows) >= expected else None

    return wait_for(arrived, 90, f"{expected} spans in {database} {where}")


@pytest.mark.torch
def test_a_run_reaches_influxdb_and_prometheus_through_the_collector(
    stack: tuple[InfluxServer, Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tts_otel.reference import TEXTS, ReferencePipeline

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

    def scraped() -> str | None:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{collector.prometheus}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        return text if "tts_stage_duration_seconds_bucket{" in text else None

    page = wait_for(scraped, 30, "the collector's prometheus endpoint")
    assert 'tts_stage="vocoder"' in page
    assert 'le="2.5"' in page


def _schema(server: InfluxQLServer, database: str) -> dict[str, dict[str, object]]:
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


@pytest.mark.torch
def test_both_paths_write_the_same_schema(
    stack: tuple[InfluxServer, Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run exported down both paths at once: collector -> db collector, direct -> db direct."""
    from tts_otel.reference import TEXTS, ReferencePipeline

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


@pytest.mark.torch
def test_persistent_queue_survives_sigkill_while_influxdb_is_down(
    stack: tuple[InfluxServer, Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tts_otel.reference import TEXTS, ReferencePipeline

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
    # At once: with no batch processor in front of it, what the collector
    # accepted is already in the exporter's queue on disk.
    collector.kill()  # SIGKILL
    collector.start()
    server.start()
    rows = _spans(server, "collector", requests, REQUESTS_ONLY)
    sent = {format(s.context.trace_id, "032x") for s in collected.get_finished_spans() if s.context}
    assert {row["trace_id"] for row in rows} == sent


def _self_signed_certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "otlp-cert.pem", tmp / "otlp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _post_empty_traces(url: str, context: ssl.SSLContext, token: str | None = None) -> int:
    """The HTTP status the OTLP/HTTP receiver answers an empty trace export with."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}/v1/traces", data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.torch
def test_otlp_over_tls_with_a_bearer_token_and_host_name_reaches_influxdb(
    otelcol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped config with TLS on, auth.yaml and host.yaml merged over it, as the README
    says to run it; the service's standard OTLP exporter set up by its OTEL_EXPORTER_OTLP_*
    variables only."""
    from tts_otel.reference import TEXTS, ReferencePipeline

    token = "s3cret-token"
    cert, key = _self_signed_certificate(tmp_path)
    with influxdb(tmp_path / "influx") as server:
        server.create_database("collector")
        collector = Collector(otelcol, V1_CONFIG, tmp_path, server, "collector")
        collector.env.update(
            OTELCOL_OTLP_TLS_ENABLED="true",
            OTELCOL_OTLP_TLS_CERT_FILE=str(cert),
            OTELCOL_OTLP_TLS_KEY_FILE=str(key),
            OTELCOL_OTLP_BEARER_TOKEN=token,
            OTELCOL_HOST_NAME="tts-node-7",
        )
        for name, value in collector.env.items():
            monkeypatch.setenv(name, value)
        command = [otelcol, *(f"--config={path}" for path in (V1_CONFIG, AUTH, HOST))]
        with running(command, tmp_path / "collector.log", f"http://127.0.0.1:{collector.health}/"):
            url = f"https://127.0.0.1:{collector.http}"
            trusted = ssl.create_default_context(cafile=str(cert))
            assert _post_empty_traces(url, trusted) == 401
            assert _post_empty_traces(url, trusted, "wrong") == 401
            assert _post_empty_traces(url, trusted, token) == 200
            with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
                _post_empty_traces(url, ssl.create_default_context(), token)

            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(cert))
            # requests lets these override the session's CA file, and so the exporter's
            # OTEL_EXPORTER_OTLP_CERTIFICATE (seen here: this machine sets both).
            monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
            monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{token}")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
            collected = InMemorySpanExporter()
            telemetry = _configure("otlp", SimpleSpanProcessor(collected))
            pipeline = ReferencePipeline(flow_steps=1)
            for text in TEXTS[:2]:
                pipeline.synthesize(text)
            telemetry.shutdown()
            sent = {
                format(s.context.span_id, "016x")
                for s in collected.get_finished_spans()
                if s.context
            }
            stored = _spans(server, "collector", len(sent))
            assert {str(row["span_id"]) for row in stored} == sent

            def hosts() -> set[str]:
                statement = 'SHOW TAG VALUES FROM "tts.requests" WITH KEY = "host.name"'
                return {str(row["value"]) for row in server.query(statement, "collector")}

            # The SDK sends no host.name by default: host.yaml inserted the collector's.
            assert wait_for(hosts, 60, "metrics with host.name") == {"tts-node-7"}
