"""``tts-otel doctor`` on a real InfluxDB OSS 2.8.0: with v2 settings (org, bucket, token), and
with v1 settings through a DBRP mapping (database, any user, the token as the password), as
a 2.x user who reads with InfluxQL gives them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Influx2Server, influxdb2
from tts_otel import cli

DB = "tts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx2Server]:
    with influxdb2(tmp_path_factory.mktemp("doctor2") / "influx") as running:
        running.create_database(DB)
        yield running


def _v2_env(monkeypatch: pytest.MonkeyPatch, server: Influx2Server, **change: str) -> None:
    values = {"URL": server.url, "TOKEN": server.token, "ORG": server.ORG, "BUCKET": DB, **change}
    for name, value in values.items():
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)


def _v1_env(monkeypatch: pytest.MonkeyPatch, server: Influx2Server, **change: str) -> None:
    values = {
        "URL": server.url,
        "API": "v1",
        "DB": DB,
        "USERNAME": "reader",
        "PASSWORD": server.token,
        **change,
    }
    for name, value in values.items():
        monkeypatch.setenv(f"TTS_OTEL_INFLUXDB_{name}", value)


def _doctor(capsys: pytest.CaptureFixture[str], code: int) -> str:
    assert cli.main(["doctor"]) == code
    return capsys.readouterr().out


_ALL_OK = [["ok", "reachable"], ["ok", "authenticated"], ["ok", "database"], ["ok", "test"]]


@pytest.mark.parametrize("settings", ["v2", "v1 through DBRP"])
def test_doctor_passes_on_a_ready_influxdb_2(
    server: Influx2Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: str,
) -> None:
    (_v2_env if settings == "v2" else _v1_env)(monkeypatch, server)
    before = len(server.query("SELECT * FROM tts_otel_doctor", DB))
    out = _doctor(capsys, 0)
    # No span storage line: 2.x has no series limits by default (and no SHOW DIAGNOSTICS).
    assert [line.split()[:2] for line in out.splitlines()[1:]] == _ALL_OK
    assert len(server.query("SELECT * FROM tts_otel_doctor", DB)) == before + 1


@pytest.mark.parametrize(
    ("api", "setting"), [("v2", "TOKEN"), ("v1", "PASSWORD")], ids=["v2", "v1 through DBRP"]
)
def test_doctor_on_influxdb_2_names_a_wrong_token_and_its_setting(
    server: Influx2Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    api: str,
    setting: str,
) -> None:
    (_v2_env if api == "v2" else _v1_env)(monkeypatch, server, **{setting: "not-the-token"})
    out = _doctor(capsys, 1)
    assert "FAIL authenticated" in out
    assert "HTTP 401" in out
    assert f"TTS_OTEL_INFLUXDB_{setting}" in out
    assert "not-the-token" not in out


def test_doctor_on_influxdb_2_names_a_missing_bucket(
    server: Influx2Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v2_env(monkeypatch, server, BUCKET="nope")
    out = _doctor(capsys, 1)
    assert "FAIL database" in out
    assert "influx bucket create -n nope" in out


def test_doctor_on_influxdb_2_advises_a_dbrp_mapping_for_a_missing_database(
    server: Influx2Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v1_env(monkeypatch, server, DB="nope")
    out = _doctor(capsys, 1)
    assert "FAIL database" in out
    assert "dbrp" in out.lower()
    assert "CREATE DATABASE" not in out
