"""Credentials never printed, whatever they hold; doctor checks what the server offers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Influx18Server, influxdb18
from tts_otel import cli
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.exporters.influxdb.transport import V1Transport

URL = "TTS_OTEL_INFLUXDB_URL"
SECRET = "s3cRt"


@pytest.mark.parametrize("character", ["/", "?", "#", "@", ":"])
def test_an_unencoded_character_in_a_url_password_is_never_printed(
    character: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = f"{SECRET}{character}rest"
    url = f"http://admin:{password}@127.0.0.1:1"
    try:
        settings = influx_settings(environ={URL: url})
    except ConfigurationError as error:
        shown = str(error) + repr(error)
    else:  # taken as the password it is, and out of the URL
        assert settings.password == password
        shown = settings.url + settings.target + repr(settings)
    assert SECRET not in shown
    monkeypatch.setenv(URL, url)
    cli.main(["doctor"])
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "variable",
    [
        "TTS_OTEL_INFLUXDB_PASSWORD",
        "TTS_OTEL_INFLUXDB_USERNAME",
        "TTS_OTEL_INFLUXDB_TOKEN",
        "TTS_OTEL_INFLUXDB_DB",
        "TTS_OTEL_INFLUXDB_RP",
        URL,
    ],
)
def test_a_credential_that_is_not_utf8_is_refused_by_name_without_its_value(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # os.environ holds a non-UTF-8 byte as a lone surrogate (surrogateescape).
    bad = f"{SECRET}\udcff"
    environ = {"TTS_OTEL_INFLUXDB_USERNAME": "admin", variable: bad}
    if variable == URL:
        environ[URL] = f"http://admin:{bad}@127.0.0.1:1"
        del environ["TTS_OTEL_INFLUXDB_USERNAME"]
    with pytest.raises(ConfigurationError) as raised:
        V1Transport(influx_settings(environ=environ)).close()
    assert variable in str(raised.value)
    assert SECRET not in str(raised.value) + repr(raised.value)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["doctor"]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


@pytest.fixture
def server18(tmp_path: Path) -> Iterator[Influx18Server]:
    with influxdb18(tmp_path / "influx") as running:
        running.create_database("speech")
        yield running


def _v2(monkeypatch: pytest.MonkeyPatch, server: Influx18Server, token: str, bucket: str) -> None:
    monkeypatch.setenv(URL, server.url)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_API", "v2")
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_ORG", server.ORG)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_BUCKET", bucket)
    monkeypatch.setenv("TTS_OTEL_INFLUXDB_TOKEN", token)


def test_doctor_with_v2_settings_on_influxd_18(
    server18: Influx18Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v2(monkeypatch, server18, server18.token, server18.bucket("speech"))
    assert cli.main(["doctor"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "ok   authenticated" in out
    assert "ok   test write" in out
    assert server18.query("SELECT * FROM tts_otel_doctor", "speech")

    _v2(monkeypatch, server18, f"{server18.USER}:wrong", server18.bucket("speech"))
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL authenticated" in out
    assert "TTS_OTEL_INFLUXDB_TOKEN" in out
    assert "wrong" not in out

    _v2(monkeypatch, server18, server18.token, server18.bucket("missing"))
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL database" in out
    assert "missing" in out
