"""The Grafana dashboards: current, and every query answers on real servers filled by a real run.

No Grafana runs here, so its variables are substituted the way Grafana would
($__rate_interval, $__interval, $timeFilter, template variables set to All)
and each query goes to a real Prometheus or a real influxd.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tts_otel
from dashboards import generate
from tests.services import (
    InfluxServer,
    free_port,
    get_json,
    influxdb,
    prometheus,
    query,
    serving,
    wait_for,
)
from tts_otel.telemetry import set_telemetry

ALL = ".*"  # a template variable set to All, with the dashboards' allValue
GRAFANA_VARIABLE = re.compile(r"\$[_a-zA-Z]")  # not the "$/" closing a regex


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target


def _values(series: list[dict[str, Any]]) -> list[float]:
    return [float(item["value"][1]) for item in series]


def test_committed_dashboards_are_current() -> None:
    assert generate.main(["--check"]) == 0


def test_generation_fails_on_a_metric_tts_otel_does_not_emit() -> None:
    dashboard = generate.prometheus_dashboard()
    dashboard["panels"][0]["targets"][0]["expr"] = "rate(tts_made_up_total[5m])"
    with pytest.raises(ValueError, match="tts_made_up_total"):
        generate._check_metrics(dashboard)


@pytest.mark.torch
def test_prometheus_panels_answer_on_a_real_prometheus(tmp_path: Path) -> None:
    from tts_otel.reference import TEXTS, ReferencePipeline

    port = free_port()
    telemetry = tts_otel.configure(
        service_name="tts", prometheus=port, set_global=False, nvml=False, cuda=None
    )
    set_telemetry(telemetry)
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "tts", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ],
    }
    dashboard = generate.prometheus_dashboard()
    pipeline = ReferencePipeline(flow_steps=1)
    try:
        with serving(pipeline.synthesize, TEXTS), prometheus(tmp_path, config) as url:
            wait_for(lambda: query(url, "tts_requests_total"), 60, "the first scrape")
            time.sleep(6)  # several scrapes inside the 15 s rate window below
            for variable in dashboard["templating"]["list"][1:]:
                metric, label = variable["query"][len("label_values(") : -1].split(", ")
                metric = metric.replace("$job", ALL)
                answer = get_json(
                    f"{url}/api/v1/label/{label}/values?"
                    + urllib.parse.urlencode({"match[]": metric})
                )
                assert answer["data"], variable["name"]
            for title, target in _targets(dashboard):
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "15s")
                    .replace("$stage", ALL)
                    .replace("$model", ALL)
                    .replace("$job", ALL)
                    .replace("$instance", ALL)
                )
                assert not GRAFANA_VARIABLE.search(expr), expr
                series = query(url, expr)  # an invalid query raises here
                if any(name in expr for name in generate.CONDITIONAL):
                    # No GPU, spool, streaming or queue in this run: runs, returns nothing.
                    assert series == [], title
                    continue
                values = _values(series)
                assert values, title
                assert all(math.isfinite(value) for value in values), (title, values)
            stage_p95 = query(
                url,
                generate._quantile(
                    0.95, "tts_stage_duration_seconds", "tts_stage", 'tts_stage=~".*"'
                ).replace("$__rate_interval", "15s"),
            )
            assert {item["metric"]["tts_stage"] for item in stage_p95} >= {
                "speaker_embedding",
                "text_normalization",
                "acoustic",
                "vocoder",
            }
    finally:
        telemetry.shutdown()
        set_telemetry(None)


@pytest.mark.torch
def test_influxdb_panels_answer_on_a_real_influxd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tts_otel.reference import TEXTS, ReferencePipeline

    database = "tts"
    with influxdb(tmp_path / "influx") as server:
        server.create_database(database)
        for key, value in {
            "TTS_OTEL_INFLUXDB_URL": server.url,
            "TTS_OTEL_INFLUXDB_DB": database,
            "TTS_OTEL_INFLUXDB_USERNAME": InfluxServer.USER,
            "TTS_OTEL_INFLUXDB_PASSWORD": InfluxServer.PASSWORD,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
        }.items():
            monkeypatch.setenv(key, value)
        telemetry = tts_otel.configure(
            service_name="tts", exporters="influxdb", set_global=False, nvml=False, cuda=None
        )
        set_telemetry(telemetry)
        pipeline = ReferencePipeline(flow_steps=1)
        started = time.monotonic()
        index = 0
        # Requests over several metric exports, so cumulative counts have differences;
        # at least six of them, however slow a loaded machine makes each.
        while time.monotonic() - started < 3 or index < 6:
            pipeline.synthesize(TEXTS[index % 4])
            index += 1
        telemetry.shutdown()
        set_telemetry(None)

        dashboard = generate.influxdb_dashboard()
        stages = server.query(dashboard["templating"]["list"][1]["query"], database)
        assert {row["value"] for row in stages} >= {"acoustic", "vocoder"}
        for title, target in _targets(dashboard):
            statement = (
                target["query"]
                .replace("$timeFilter", "time > now() - 1h")
                .replace("$__interval", "1s")
                .replace("$stage", ALL)
            )
            assert not GRAFANA_VARIABLE.search(statement), statement
            rows = server.query(statement, database)  # an InfluxQL error raises here
            assert rows, title
            numbers = [
                value
                for row in rows
                for key, value in row.items()
                if key != "time" and isinstance(value, int | float)
            ]
            assert numbers, title
            assert all(math.isfinite(number) for number in numbers), title
        requests_per_interval = server.query(
            dashboard["panels"][0]["targets"][0]["query"]
            .replace("$timeFilter", "time > now() - 1h")
            .replace("$__interval", "1h"),
            database,
        )
        assert sum(row["count"] for row in requests_per_interval) == index
