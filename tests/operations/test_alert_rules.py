"""The shipped alert rules and Alertmanager config, checked by promtool and amtool."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.kubernetes.generate import runbook_bases
from tests.services import alertmanager, binary, get_json, wait_for

ALERTS = Path(__file__).parent.parent.parent / "alerts"
RULE_FILES = sorted(ALERTS.glob("tts-*.yml"))


def _alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [binary("promtool"), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    "test_file", sorted((ALERTS / "tests").glob("*.test.yml")), ids=lambda p: p.name
)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    done = subprocess.run(
        [binary("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested() -> None:
    tested = set()
    for test_file in (ALERTS / "tests").glob("*.test.yml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            tested |= {
                check["alertname"]
                for check in case.get("alert_rule_test", [])
                if check.get("exp_alerts")
            }
    assert {rule["alert"] for rule in _alert_rules()} <= tested


def test_every_alert_has_severity_annotations_and_a_runbook_entry() -> None:
    runbook = (ALERTS / "runbook.md").read_text()
    anchors = {heading.lower() for heading in re.findall(r"^## (\w+)$", runbook, re.M)}
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "none"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert base.startswith("https://"), rule["alert"]  # a relative link is dead in a pager
        assert anchor in anchors, rule["alert"]
    # One base for all, set by deploy/kubernetes/generate.py --runbook-base.
    assert len(runbook_bases((ALERTS / "tts-alerts.yml").read_text())) == 1


def test_every_reference_stage_has_a_threshold() -> None:
    from tts_otel import semconv

    thresholds = yaml.safe_load((ALERTS / "tts-thresholds.yml").read_text())["groups"][0]["rules"]
    stages = {r["labels"]["tts_stage"] for r in thresholds if r["record"].startswith("tts:stage")}
    assert stages == {
        *semconv.TOP_LEVEL_STAGES,
        semconv.STAGE_ACOUSTIC_LLM,
        semconv.STAGE_ACOUSTIC_FLOW,
    }


def test_amtool_accepts_the_alertmanager_config() -> None:
    done = subprocess.run(
        [binary("amtool"), "check-config", str(ALERTS / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _routes_to(receiver: str, labels: list[str]) -> bool:
    """Whether amtool's route test sends an alert with ``labels`` to ``receiver``."""
    config = f"--config.file={ALERTS / 'alertmanager.yml'}"
    command = [
        binary("amtool"),
        "config",
        "routes",
        "test",
        config,
        f"--verify.receivers={receiver}",
    ]
    return subprocess.run([*command, *labels], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=TTSTargetDown"], "pager"),
        (["severity=warning", "alertname=TTSStageLatencyHigh", "tts_stage=vocoder"], "ticket"),
        (["severity=none", "alertname=Watchdog"], "watchdog"),
        (["alertname=SomethingUnlabelled"], "ticket"),
    ],
)
def test_routes_go_to_the_right_receiver(labels: list[str], receiver: str) -> None:
    assert _routes_to(receiver, labels)
    assert not _routes_to("pager" if receiver != "pager" else "ticket", labels)


def _post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(UTC).isoformat()
    body = json.dumps([{"labels": labels, "startsAt": now} for labels in alerts]).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_a_critical_alert_inhibits_its_warning_on_a_real_alertmanager(tmp_path: Path) -> None:
    """The shipped inhibit rules, applied by Alertmanager itself: a critical alert holds back the
    warning of the same alert and target only; a dead target holds back its latency alerts."""
    hot = {"alertname": "TTSGPUTemperatureHigh", "job": "tts", "instance": "a:9464"}
    alerts = [
        {**hot, "hw_id": "0", "severity": "critical"},
        {**hot, "hw_id": "0", "severity": "warning"},  # inhibited by the one above
        {**hot, "hw_id": "1", "severity": "warning"},  # another GPU: not inhibited
        {"alertname": "TTSTargetDown", "job": "tts-b", "severity": "critical"},
        {
            "alertname": "TTSStageLatencyHigh",
            "job": "tts-b",
            "tts_stage": "vocoder",
            "severity": "warning",
        },  # inhibited: its target is down
        {
            "alertname": "TTSStageLatencyHigh",
            "job": "tts",
            "tts_stage": "vocoder",
            "severity": "warning",
        },
    ]
    with alertmanager(tmp_path, ALERTS / "alertmanager.yml") as url:
        _post_alerts(url, alerts)

        def states() -> dict[tuple[str, ...], str] | None:
            answer = get_json(f"{url}/api/v2/alerts")
            if len(answer) < len(alerts):
                return None
            return {
                tuple(sorted(f"{k}={v}" for k, v in a["labels"].items())): a["status"]["state"]
                for a in answer
            }

        seen = wait_for(states, 20, "Alertmanager to list the alerts")
    suppressed = {key for key, state in seen.items() if state == "suppressed"}
    expected = {tuple(sorted(f"{k}={v}" for k, v in alerts[i].items())) for i in (1, 4)}
    assert suppressed == expected
