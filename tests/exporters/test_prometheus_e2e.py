"""End to end on loopback: the service's /metrics, a real Prometheus, a real Alertmanager."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.services import (
    alertmanager as running_alertmanager,
)
from tests.services import (
    free_port,
    free_ports,
    prometheus,
    query,
    serving,
    wait_for,
)

torch = pytest.importorskip("torch")

import tts_otel  # noqa: E402
from tts_otel.reference import TEXTS, ReferencePipeline  # noqa: E402
from tts_otel.telemetry import set_telemetry  # noqa: E402

ALERTS = Path(__file__).parent.parent.parent / "alerts"


def _scaled(rule_file: Path, target: Path) -> Path:
    """The shipped rules with time compressed for a test: 5m windows -> 10s, `for` -> 2s.

    Expressions, labels and annotations stay as shipped.
    """
    text = rule_file.read_text()
    text = re.sub(r"\[(5m|30m|1h|6h|3d)\]", "[10s]", text)
    text = re.sub(r"^(\s+)for: \S+$", r"\1for: 2s", text, flags=re.M)
    target.write_text(text)
    return target


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        payload = json.loads(body)
        payload["path"] = self.path
        self.received.append(payload)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _Webhook.received
    finally:
        server.shutdown()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]) -> Iterator[str]:
    """Alertmanager with the shipped routing; webhooks point at the test, timings shortened."""
    config = yaml.safe_load((ALERTS / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for route in config["route"]["routes"]:
        route.pop("group_interval", None)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook[0] + "/" + receiver["name"]
    (tmp_path / "am").mkdir()
    config_file = tmp_path / "am" / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    with running_alertmanager(tmp_path / "am", config_file) as url:
        yield url


def test_vocoder_latency_alert_fires_routes_and_resolves(
    tmp_path: Path, alertmanager: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    metrics_port = free_port()
    telemetry = tts_otel.configure(
        service_name="tts", prometheus=metrics_port, set_global=False, nvml=False, cuda=None
    )
    pipeline = ReferencePipeline(flow_steps=1, inject_latency={"vocoder": 0.3})
    rules = tmp_path / "rules"
    rules.mkdir()
    # The documented way to change a threshold: a thresholds file of your own.
    thresholds = rules / "thresholds.yml"
    thresholds.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "test-thresholds",
                        "rules": [
                            {
                                "record": "tts:stage_latency_p95_threshold:seconds",
                                "expr": "vector(0.2)",
                                "labels": {"tts_stage": "vocoder"},
                            },
                        ],
                    }
                ]
            }
        )
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [
            str(_scaled(ALERTS / "tts-recording.yml", rules / "recording.yml")),
            str(_scaled(ALERTS / "tts-alerts.yml", rules / "alerts.yml")),
            str(thresholds),
        ],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {"job_name": "tts", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        ],
    }
    received = webhook[1]

    def vocoder_alert(status: str) -> dict[str, Any] | None:
        for payload in received:
            for alert in payload["alerts"]:
                labels = alert["labels"]
                if labels["alertname"] == "TTSStageLatencyHigh" and alert["status"] == status:
                    return {**alert, "path": payload["path"], "version": payload["version"]}
        return None

    try:
        with serving(pipeline.synthesize, TEXTS[:3]), prometheus(tmp_path, config):
            firing = wait_for(lambda: vocoder_alert("firing"), 90, "the vocoder latency alert")
            assert firing["labels"]["tts_stage"] == "vocoder"
            assert firing["labels"]["severity"] == "warning"
            assert firing["labels"]["tts_sample_rate"] == "24000"
            assert firing["path"] == "/ticket"
            assert firing["version"] == "4"
            assert "runbook.md#ttsstagelatencyhigh" in firing["annotations"]["runbook_url"]
            other_stages = {
                a["labels"].get("tts_stage")
                for p in received
                for a in p["alerts"]
                if a["labels"]["alertname"] == "TTSStageLatencyHigh"
            }
            assert other_stages == {"vocoder"}

            pipeline.inject_latency.clear()
            resolved = wait_for(lambda: vocoder_alert("resolved"), 90, "the resolved notification")
            assert resolved["labels"]["tts_stage"] == "vocoder"
            assert any(p["path"] == "/watchdog" for p in received)
    finally:
        telemetry.shutdown()
        set_telemetry(None)


def test_demo_workers_are_scraped_and_summed(tmp_path: Path) -> None:
    """Two `tts-otel demo --exporter prometheus` processes, one port each: the
    documented way to run several workers. Prometheus scrapes both; sum() adds them."""
    ports = free_ports(2)
    requests = [2, 3]
    workers = []
    for index, (port, count) in enumerate(zip(ports, requests, strict=True)):
        env = {**os.environ, "TTS_OTEL_PROMETHEUS_PORT": str(port)}
        log = (tmp_path / f"worker{index}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tts_otel.cli",
                    "demo",
                    "--exporter",
                    "prometheus",
                    "--requests",
                    str(count),
                    "--flow-steps",
                    "1",
                    "--serve-for",
                    "60",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "tts-workers",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}" for port in ports]},
                ],
            }
        ],
    }
    try:
        with prometheus(tmp_path, config) as url:

            def total() -> float | None:
                result = query(url, 'sum(tts_requests_total{job="tts-workers"})')
                value = float(result[0]["value"][1]) if result else None
                return value if value == sum(requests) else None

            assert wait_for(total, 90, "both workers' requests in Prometheus") == 5
            up = query(url, 'count(up{job="tts-workers"} == 1)')
            assert float(up[0]["value"][1]) == 2
            p95 = query(
                url,
                "histogram_quantile(0.95, sum by (le, tts_stage) "
                '(tts_stage_duration_seconds_bucket{job="tts-workers",tts_stage="vocoder"}))',
            )
            assert 0 < float(p95[0]["value"][1]) < 600
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
