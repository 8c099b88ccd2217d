"""Grafana provisioning: data sources and the dashboard provider agree with the dashboards.

No Grafana runs here; these check what Grafana would need to match: a data source of each
dashboard's variable type, InfluxQL for the InfluxQL dashboard, the database every writer
uses by default (and the DBRP mapping's), and the scrape interval $__rate_interval assumes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dashboards import generate
from deploy.kubernetes.generate import service_monitors
from tts_otel.exporters.influxdb.settings import InfluxSettings

PROVISIONING = Path(generate.__file__).parent / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "tts-otel.yaml"
PROVIDERS = PROVISIONING / "dashboards" / "tts-otel.yaml"
COLLECTOR_V1 = Path(__file__).parent.parent.parent / "collector" / "config-influxdb-v1.yaml"


def _datasources() -> list[dict[str, Any]]:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    return list(config["datasources"])


def test_each_dashboard_variable_finds_a_provisioned_data_source() -> None:
    types = {source["type"] for source in _datasources()}
    for build in generate.DASHBOARDS.values():
        dashboard = build()
        variable = dashboard["templating"]["list"][0]
        assert variable["type"] == "datasource"
        assert variable["query"] in types, dashboard["title"]
        # Every panel and target goes through that variable, not a fixed uid.
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
    uids = [source["uid"] for source in _datasources()]
    assert len(uids) == len(set(uids))
    assert sum(bool(source.get("isDefault")) for source in _datasources()) <= 1


def test_influxdb_sources_speak_influxql_to_the_database_the_writers_use() -> None:
    influx = [source for source in _datasources() if source["type"] == "influxdb"]
    assert influx
    queries = [target["query"] for _, target in _targets(generate.influxdb_dashboard())]
    assert all(re.match(r"(SELECT|SHOW) ", query) for query in queries)
    collector_db = yaml.safe_load(COLLECTOR_V1.read_text())["exporters"]["influxdb"][
        "v1_compatibility"
    ]["db"]
    assert collector_db == "${env:TTS_OTEL_INFLUXDB_DB:-tts}"
    for source in influx:
        assert source["jsonData"]["version"] == "InfluxQL", source["name"]
        # Grafana before 9 reads database, later ones jsonData.dbName.
        assert source["database"] == source["jsonData"]["dbName"] == InfluxSettings().database
    # InfluxDB 2: the documented DBRP mapping names the same database.
    dbrp = re.search(r"influx v1 dbrp create --db (\S+) ", DATASOURCES.read_text())
    assert dbrp
    assert dbrp[1] == InfluxSettings().database
    token_source = next(s for s in influx if "httpHeaderName1" in s["jsonData"])
    assert token_source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert token_source["secureJsonData"]["httpHeaderValue1"].startswith("Token ")


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in dashboard["panels"] for t in p["targets"]]


def test_prometheus_source_knows_the_scrape_interval_of_the_service_monitor() -> None:
    """$__rate_interval is four times the data source's timeInterval: it must be the scrape
    interval, or rate() windows hold too few samples."""
    prometheus = next(s for s in _datasources() if s["type"] == "prometheus")
    intervals = {e["interval"] for e in service_monitors()[0]["spec"]["endpoints"]}
    assert intervals == {prometheus["jsonData"]["timeInterval"]}


def test_the_dashboard_provider_serves_generated_files_read_only() -> None:
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()
    # Generated JSON: edits in the UI would be lost at the next generate.py.
    assert provider["allowUiUpdates"] is False
    for file_name in generate.DASHBOARDS:
        assert file_name in PROVIDERS.read_text()
