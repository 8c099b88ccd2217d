"""Kubernetes manifests: generated from the rule files in alerts/, current, and passing promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.kubernetes import generate
from tests.services import binary

MANIFESTS = Path(generate.__file__).parent


def test_committed_manifests_are_current() -> None:
    assert generate.problems() == []
    assert generate.main(["--check"]) == 0


def test_prometheus_rule_carries_the_rule_files_unchanged() -> None:
    rule = yaml.safe_load((MANIFESTS / "prometheusrule.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    groups = [
        group
        for name in generate.RULE_FILES
        for group in yaml.safe_load((generate.ALERTS / name).read_text())["groups"]
    ]
    assert rule["spec"]["groups"] == groups


def test_the_rules_inside_the_manifest_pass_promtool_and_the_unit_tests(tmp_path: Path) -> None:
    """The groups taken back out of the PrometheusRule, one file per source, under the names
    the unit tests load: promtool checks them and every test in alerts/tests/ passes on them."""
    groups = iter(yaml.safe_load((MANIFESTS / "prometheusrule.yaml").read_text())["spec"]["groups"])
    for name in generate.RULE_FILES:
        count = len(yaml.safe_load((generate.ALERTS / name).read_text())["groups"])
        extracted = [next(groups) for _ in range(count)]
        (tmp_path / name).write_text(yaml.safe_dump({"groups": extracted}, sort_keys=False))
    shutil.copytree(generate.ALERTS / "tests", tmp_path / "tests")
    promtool = binary("promtool")
    files = [str(tmp_path / name) for name in generate.RULE_FILES]
    done = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = sorted(str(path) for path in (tmp_path / "tests").glob("*.test.yml"))
    assert tests
    done = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_service_monitors_name_jobs_the_alerts_expect() -> None:
    monitors = list(yaml.safe_load_all((MANIFESTS / "servicemonitors.yaml").read_text()))
    assert {m["kind"] for m in monitors} == {"ServiceMonitor"}
    by_name = {m["metadata"]["name"]: m["spec"] for m in monitors}
    # job comes from the Service's name label: "tts" matches TTSTargetDown's job=~"tts.*".
    assert by_name["tts"]["jobLabel"] == "app.kubernetes.io/name"
    assert by_name["tts"]["selector"]["matchLabels"]["app.kubernetes.io/name"].startswith("tts")
    ports = {e["port"]: e for e in by_name["otelcol-tts"]["endpoints"]}
    # The collector's exporter writes job/instance from each sender: keep them.
    assert ports["prometheus"]["honorLabels"] is True
    assert "telemetry" in ports


def test_runbook_base_is_set_in_one_place(tmp_path: Path) -> None:
    original = (generate.ALERTS / "tts-alerts.yml").read_text()
    copy = tmp_path / "tts-alerts.yml"
    copy.write_text(original)
    generate.set_runbook_base("https://wiki.example.org/sre/tts", copy)
    rewritten = copy.read_text()
    assert generate.runbook_bases(rewritten) == {"https://wiki.example.org/sre/tts"}
    # Only the URLs changed: the same rules, comments and line count.
    assert len(rewritten.splitlines()) == len(original.splitlines())
    changed = [
        (a, b) for a, b in zip(original.splitlines(), rewritten.splitlines(), strict=True) if a != b
    ]
    assert changed
    assert all("runbook_url" in a for a, _ in changed)
    with pytest.raises(ValueError, match="absolute"):
        generate.set_runbook_base("runbook.md", copy)
    assert generate.main(["--runbook-base", "alerts/runbook.md"]) == 2
