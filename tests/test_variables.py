"""Every variable tts-otel reads, its own and the SDK's it relies on: importing never
raises; a bad value fails at configure() by name, with the fix and a short message;
without configure() it falls back with one warning; empty is unset."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys

import pytest

import tts_otel
from tts_otel._settings import rows
from tts_otel.config import SdkSettings, Settings, load_sdk_settings, load_settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.influxdb.settings import InfluxSettings, influx_settings
from tts_otel.testing import capture

LONG = "h" * 10_000
NOT_UTF8 = "tts-\udcff"  # a non-UTF-8 byte, as os.environ holds it (surrogateescape)

# (variable, bad value, also set): configure() must name the variable.
BAD = [
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "abc", {}),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-1", {}),
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1.5", {}),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "abc", {}),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "-3", {}),
    ("OTEL_ATTRIBUTE_COUNT_LIMIT", "many", {}),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", "x", {}),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", "x", {}),
    ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "x", {}),
    ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "x", {}),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip", {}),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", LONG, {}),
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli", {}),
    ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "lz4", {}),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{NOT_UTF8}:4317", {}),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://{NOT_UTF8}:4317", {}),
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://{NOT_UTF8}:4317", {}),
    ("OTEL_EXPORTER_OTLP_HEADERS", f"key={NOT_UTF8}", {}),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"key={NOT_UTF8}", {}),
    ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", f"key={NOT_UTF8}", {}),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", {}),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp", {}),
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "udp", {}),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "nan", {}),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1", {}),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "soon", {}),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "0", {}),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "x", {}),
    ("OTEL_BSP_SCHEDULE_DELAY", "-5", {}),
    ("OTEL_BSP_EXPORT_TIMEOUT", "x", {}),
    ("OTEL_METRIC_EXPORT_INTERVAL", "inf", {}),
    ("OTEL_METRIC_EXPORT_TIMEOUT", "x", {}),
    ("OTEL_SERVICE_NAME", NOT_UTF8, {}),
    ("OTEL_RESOURCE_ATTRIBUTES", f"a={NOT_UTF8}", {}),
    ("TTS_OTEL_PROMETHEUS_HOST", LONG, {}),
    ("OTEL_EXPORTER_PROMETHEUS_HOST", LONG, {}),
    ("OTEL_EXPORTER_PROMETHEUS_HOST", "abc.invalid", {"TTS_OTEL_EXPORTERS": "prometheus"}),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "99999", {}),
    ("TTS_OTEL_PROMETHEUS_PORT", "http", {}),
    ("TTS_OTEL_EXPORTERS", "consol", {}),
    ("OTEL_TRACES_EXPORTER", "otpl", {}),
    ("OTEL_METRICS_EXPORTER", "prometeus", {}),
    ("TTS_OTEL_OUTPUT_DIR", NOT_UTF8, {}),
    ("TTS_OTEL_OUTPUT_MODE", LONG, {}),
    ("TTS_OTEL_OUTPUT_MODE", "0400", {}),
    ("TTS_OTEL_OTLP_SPOOL_DIR", "d" * 10_000, {}),
    ("TTS_OTEL_OTLP_SPOOL_DIR", NOT_UTF8, {}),
    ("TTS_OTEL_OTLP_SPOOL_BYTES", "1.5", {}),
    ("TTS_OTEL_RECORD_TEXT", LONG, {}),
    ("TTS_OTEL_KV_CACHE", "maybe", {}),
    ("TTS_OTEL_MODEL_VERSION", NOT_UTF8, {}),
]
_IDS = [f"{variable}={value[:12]!r}" for variable, value, _ in BAD]

_OURS = {v for r in (*rows(Settings), *rows(SdkSettings)) for v in r.variables}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in _OURS:
        monkeypatch.delenv(variable, raising=False)


def test_the_table_covers_every_variable_tts_otel_and_the_sdk_read_for_it() -> None:
    assert {variable for variable, _, _ in BAD} <= _OURS
    assert {r.variables[0] for r in (*rows(Settings), *rows(SdkSettings))} - {
        "TTS_OTEL_TIMING",
        "TTS_OTEL_GPU_MEMORY",
        "TTS_OTEL_NVML",
        "TTS_OTEL_MAX_ATTRIBUTE_VALUES",
        "TTS_OTEL_METRIC_BUFFER",
    } <= {variable for variable, _, _ in BAD} | {
        # the general variable is checked as the fallback of the per-signal one
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    }


@pytest.mark.parametrize(("variable", "value", "also"), BAD, ids=_IDS)
def test_configure_names_the_variable_and_the_fix(
    variable: str, value: str, also: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    for name, extra in also.items():
        monkeypatch.setenv(name, extra)
    with pytest.raises(ConfigurationError) as raised:
        tts_otel.configure(set_global=False, nvml=False, cuda=None, flush_on_signals=False)
    message = str(raised.value)
    assert raised.value.setting == variable, message
    assert "Fix: use" in message or "Fix: " in message
    assert len(message) < 600  # a 10 kB value is shortened
    assert "Traceback" not in message


@pytest.mark.parametrize(("variable", "value", "also"), BAD, ids=_IDS)
def test_without_configure_a_bad_variable_is_one_warning(
    variable: str, value: str, also: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    environ = {variable: value}
    with caplog.at_level(logging.WARNING, logger="tts_otel"):
        load_settings(environ=environ, lenient=True)
        load_sdk_settings(environ, lenient=True)
        load_settings(environ=environ, lenient=True)
        load_sdk_settings(environ, lenient=True)
    warned = [r for r in caplog.records if variable in r.getMessage()]
    bad_anywhere = variable in {"OTEL_EXPORTER_PROMETHEUS_HOST"} and value == "abc.invalid"
    if variable in {"TTS_OTEL_EXPORTERS", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"}:
        return  # a name is known bad only when exporters are built: in configure()
    assert len(warned) == (0 if bad_anywhere else 1), [r.getMessage() for r in warned]


def test_every_variable_empty_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    influx = {v for r in rows(InfluxSettings) for v in r.variables}
    for variable in _OURS | influx:
        monkeypatch.setenv(variable, "")
    with capture() as cap:
        assert cap.telemetry.settings == dataclasses.replace(Settings(), nvml=False)
        with tts_otel.synthesis(model="m"):
            pass
    assert load_sdk_settings() == SdkSettings()
    assert influx_settings() == influx_settings(environ={})
    # The SDK's OTLP exporters raised for an empty compression or timeout themselves (the
    # gRPC ones read the per-signal timeouts whatever timeout they are given).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    for protocol in ("grpc", "http/protobuf"):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        tts_otel.configure(
            exporters="otlp", set_global=False, nvml=False, cuda=None, flush_on_signals=False
        ).shutdown()


@pytest.mark.parametrize(
    "variable",
    [
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_SERVICE_NAME",
        "TTS_OTEL_RECORD_TEXT",
    ],
)
def test_importing_never_raises(variable: str) -> None:
    code = "import tts_otel\nwith tts_otel.synthesis(model='m'):\n    pass\nprint('ok')"
    environ = {**os.environ, variable: "abc"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr.count(variable) <= 1  # one warning at most, no traceback
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TTS_OTEL_INFLUXDB_SPOOL_DIR", "d" * 10_000),
        ("TTS_OTEL_INFLUXDB_DB", NOT_UTF8),
        ("TTS_OTEL_INFLUXDB_RP", NOT_UTF8),
        ("TTS_OTEL_INFLUXDB_ORG", NOT_UTF8),
        ("TTS_OTEL_INFLUXDB_BUCKET", NOT_UTF8),
        ("TTS_OTEL_INFLUXDB_TIMEOUT", LONG),
    ],
)
def test_influxdb_variables_are_refused_by_name(variable: str, value: str) -> None:
    environ = {variable: value, "TTS_OTEL_INFLUXDB_API": "v1"}
    with pytest.raises(ConfigurationError) as raised:
        influx_settings(environ=environ)
    assert raised.value.setting == variable
    assert len(str(raised.value)) < 600
