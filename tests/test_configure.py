"""configure(): settings resolution, fail-fast errors, pluggable exporters, user providers."""

from __future__ import annotations

import inspect
import logging
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tests.services import free_port
from tts_otel import semconv
from tts_otel._settings import rows
from tts_otel.config import Settings, load_settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters import ExporterParts, build_exporter
from tts_otel.exporters.influxdb.settings import InfluxSettings, influx_settings
from tts_otel.read.records import from_otlp_json, from_sdk
from tts_otel.read.summary import summarize
from tts_otel.telemetry import get_telemetry, set_telemetry
from tts_otel.testing import TelemetryCapture, capture


@pytest.fixture(autouse=True)
def _restore_active() -> Iterator[None]:
    yield
    set_telemetry(None)


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"TTS_OTEL_TIMING": "gpu"}, "TTS_OTEL_TIMING"),
        ({"TTS_OTEL_RECORD_TEXT": "sometimes"}, "TTS_OTEL_RECORD_TEXT"),
        ({"TTS_OTEL_MAX_ATTRIBUTE_VALUES": "0"}, "TTS_OTEL_MAX_ATTRIBUTE_VALUES"),
        ({"TTS_OTEL_METRIC_BUFFER": "lots"}, "TTS_OTEL_METRIC_BUFFER"),
        ({"TTS_OTEL_NVML": "maybe"}, "TTS_OTEL_NVML"),
    ],
)
def test_bad_environment_fails_fast_naming_the_variable(
    environ: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ=environ)
    assert raised.value.setting == setting
    assert "Fix:" in str(raised.value)


def test_arguments_win_over_environment_which_wins_over_defaults() -> None:
    environ = {
        "TTS_OTEL_TIMING": "cuda_events",
        "OTEL_SERVICE_NAME": "svc",
        "TTS_OTEL_EXPORTERS": "console,file",
    }
    from_env = load_settings(environ=environ)
    assert (from_env.timing, from_env.service_name, from_env.exporters) == (
        "cuda_events",
        "svc",
        ("console", "file"),
    )
    explicit = load_settings(timing="wall", service_name="arg", exporters=(), environ=environ)
    assert (explicit.timing, explicit.service_name, explicit.exporters) == ("wall", "arg", ())
    assert load_settings(environ={}).timing == "wall"


def test_unknown_and_unbuilt_exporters_fail_with_the_choices() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"unknown exporter 'zipkinx'.*console, file, influxdb, otlp, prometheus",
    ):
        tts_otel.configure(exporters="zipkinx", set_global=False, nvml=False)
    with pytest.raises(ConfigurationError, match="exporters"):
        tts_otel.configure(exporters=[object()], set_global=False, nvml=False)  # type: ignore[list-item]


def test_works_on_providers_the_application_built() -> None:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = tts_otel.configure(
        tracer_provider=tracer_provider, meter_provider=meter_provider, set_global=False, nvml=False
    )
    with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
        pass
    assert {s.name for s in spans.get_finished_spans()} == {"tts.synthesize", "tts.vocoder"}
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert semconv.METRIC_STAGE_DURATION in names
    telemetry.shutdown()
    # The application's providers are its own: tts-otel does not shut them down.
    with tracer_provider.get_tracer("still-alive").start_as_current_span("after"):
        pass
    assert "after" in {s.name for s in spans.get_finished_spans()}


class _StuckExporter(SpanExporter):
    """An exporter whose first export never returns until released: a hung backend."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        return SpanExportResult.SUCCESS


def _requests_behind(stuck: _StuckExporter, requests: int) -> TelemetryCapture:
    """``requests`` requests of two spans each, made once ``stuck`` holds the first export."""
    reader = InMemoryMetricReader()
    telemetry = tts_otel.configure(
        exporters=[stuck, reader], set_global=False, nvml=False, flush_on_signals=False
    )
    for index in range(requests):
        with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
            pass
        if index == 0:
            assert stuck.entered.wait(5)
    return TelemetryCapture(telemetry, InMemorySpanExporter(), reader)


def test_spans_the_sdk_queue_drops_are_counted_when_sdk_metrics_are_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    stuck = _StuckExporter()
    sdk_metrics = _requests_behind(stuck, 5)  # 10 spans: 1 taken by the export, 4 queued
    dropped = sdk_metrics.counter("otel.sdk.processor.span.processed", {"error.type": "queue_full"})
    assert dropped == 5
    stuck.release.set()
    sdk_metrics.telemetry.shutdown()


def test_spans_the_sdk_queue_drops_are_counted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's own count needs OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED (9 to 28 us a
    # span); tts-otel's must not: a hung exporter and more spans than the queue holds.
    monkeypatch.delenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", raising=False)
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    stuck = _StuckExporter()
    counts = _requests_behind(stuck, 20)  # 40 spans: 1 taken by the export, 8 queued, 31 dropped
    dropped = counts.counter(
        semconv.METRIC_TELEMETRY_DROPPED, {semconv.ATTR_TELEMETRY_SIGNAL: "spans"}
    )
    assert dropped == 31
    assert counts.counter("otel.sdk.processor.span.processed") == 0  # the SDK's stays off
    stuck.release.set()
    counts.telemetry.shutdown()


def test_readers_cannot_join_an_existing_meter_provider() -> None:
    with pytest.raises(ConfigurationError, match="meter_provider"):
        tts_otel.configure(
            exporters=[InMemoryMetricReader()], meter_provider=MeterProvider(), set_global=False
        )


def test_file_exporter_writes_otlp_json_that_reports_read_back(tmp_path: Path) -> None:
    collected = InMemorySpanExporter()
    telemetry = tts_otel.configure(
        exporters=["file", SimpleSpanProcessor(collected)],
        output_dir=tmp_path,
        set_global=False,
        nvml=False,
    )
    for index in range(3):
        with tts_otel.synthesis(model="m", sample_rate=24000, text="x" * index) as req:
            for stage in ("text_normalization", "acoustic", "vocoder"):
                with req.stage(stage):
                    pass
            req.audio(samples=24000 * (index + 1))
    telemetry.shutdown()

    from_file = summarize(from_otlp_json(tmp_path / "traces.jsonl"))
    live = summarize(from_sdk(collected.get_finished_spans()))
    assert from_file == live
    assert from_file.requests == 3
    assert from_file.audio_seconds == 6.0
    metrics_text = (tmp_path / "metrics.jsonl").read_text()
    assert semconv.METRIC_STAGE_DURATION in metrics_text


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint: the span requests it got, and each POST's path and the
    value of its ``x-signal`` header."""

    received: ClassVar[list[ExportTraceServiceRequest]] = []
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("x-signal")))
        if self.path == "/v1/traces":
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            self.received.append(message)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_exporter_sends_spans_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        telemetry = tts_otel.configure(exporters="otlp", set_global=False, nvml=False)
        with tts_otel.synthesis(model="m") as req, req.stage("acoustic"):
            pass
        telemetry.shutdown()
    finally:
        server.shutdown()
    names = {
        span.name
        for message in _Receiver.received
        for resource in message.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert names == {"tts.synthesize", "tts.acoustic"}


def test_otlp_protocol_must_be_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        tts_otel.configure(exporters="otlp", set_global=False, nvml=False)


_DEFAULTS = Settings()


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("TTS_OTEL_MAX_ATTRIBUTE_VALUES", "abc", "max_attribute_values"),
        ("TTS_OTEL_TIMING", "gpu", "timing"),
        ("TTS_OTEL_RECORD_TEXT", "sometimes", "record_text"),
        ("TTS_OTEL_GPU_MEMORY", "maybe", "gpu_memory"),
        ("TTS_OTEL_METRIC_BUFFER", "-3", "metric_buffer_size"),
        ("TTS_OTEL_PROMETHEUS_PORT", "99999", "prometheus_port"),
        ("TTS_OTEL_PROMETHEUS_HOST", " ", "prometheus_host"),
    ],
)
def test_without_configure_a_bad_variable_is_logged_once_and_never_raised(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    field: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="tts_otel"):
        for _ in range(3):  # a fresh handle each time: still one warning
            set_telemetry(None)
            with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
                pass
    warnings = [r.getMessage() for r in caplog.records if variable in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "Fix:" in warnings[0]
    assert "default" in warnings[0]
    assert getattr(get_telemetry().settings, field) == getattr(_DEFAULTS, field)
    # configure() is the place to fail fast, and still does.
    with pytest.raises(ConfigurationError) as raised:
        tts_otel.configure(set_global=False, nvml=False, flush_on_signals=False)
    assert raised.value.setting == variable


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_prometheus_port_zero_binds_a_free_port_and_reports_it() -> None:
    telemetry = tts_otel.configure(
        prometheus=0, set_global=False, nvml=False, flush_on_signals=False
    )
    try:
        (url,) = telemetry.destinations
        assert url.startswith("http://127.0.0.1:")
        assert not url.startswith("http://127.0.0.1:0/")
        assert semconv.METRIC_TELEMETRY_DROPPED.replace(".", "_") in _scrape(url)
    finally:
        telemetry.shutdown()


def test_sdk_disabled_binds_no_prometheus_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    telemetry = tts_otel.configure(
        prometheus=port, set_global=False, nvml=False, flush_on_signals=False
    )
    try:
        assert telemetry.destinations == ()
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))  # still free
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize(
    ("variable", "value", "exporter", "named"),
    [
        ("OTEL_METRIC_EXPORT_INTERVAL", "-5", "file", "OTEL_METRIC_EXPORT_INTERVAL"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "file", "OTEL_BSP_MAX_QUEUE_SIZE"),
        # Below the SDK's default batch (512): the SDK refuses the pair.
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100", "file", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc", "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ],
)
def test_bad_sdk_variables_fail_at_configure_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variable: str,
    value: str,
    exporter: str,
    named: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        tts_otel.configure(
            exporters=exporter,
            output_dir=tmp_path,
            set_global=False,
            nvml=False,
            flush_on_signals=False,
        )
    assert raised.value.setting == named
    assert "Fix:" in str(raised.value)


@pytest.mark.parametrize("host", [" ", "no-such-host.invalid"])
def test_a_bad_prometheus_host_is_named_as_the_host(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("TTS_OTEL_PROMETHEUS_HOST", host)
    with pytest.raises(ConfigurationError) as raised:
        tts_otel.configure(prometheus=True, set_global=False, nvml=False, flush_on_signals=False)
    assert raised.value.setting == "TTS_OTEL_PROMETHEUS_HOST"


def test_capture_takes_exporter_names_as_a_string() -> None:
    with capture(exporters="console") as telemetry:
        with tts_otel.synthesis(model="m") as req, req.stage("vocoder"):
            pass
        assert len(telemetry.spans_named("tts.synthesize")) == 1


@pytest.mark.parametrize(
    ("environ", "traces", "metrics"),
    [
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            },
            "grpc",
            "http",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "http",
            "grpc",
        ),
    ],
)
def test_otlp_metrics_take_their_own_protocol_variable(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], traces: str, metrics: str
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    parts = build_exporter("otlp", load_settings(exporters=()))
    assert parts.span_exporter is not None
    assert parts.metric_reader is not None
    metric_exporter = parts.metric_reader._exporter  # type: ignore[attr-defined]
    try:
        # The SDK's exporters, whose connections the spooling OTLP exporters send through.
        span_sdk = parts.span_exporter.sdk_exporter  # type: ignore[attr-defined]
        assert f".proto.{traces}." in type(span_sdk).__module__
        assert f".proto.{metrics}." in type(metric_exporter.sdk_exporter).__module__
    finally:
        parts.metric_reader.shutdown()
        parts.span_exporter.shutdown()


# --- one table per settings group ---------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_a_configure_keyword_or_variable_only() -> None:
    keywords = set(inspect.signature(tts_otel.configure).parameters)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for row in rows(Settings):
        if row.argument is None:
            assert f"| (variable only) | `{row.variables[0]}`" in readme, row.name
        else:
            assert row.argument in keywords, f"{row.name}: configure() has no {row.argument}="


def test_configure_takes_no_setting_the_table_lacks() -> None:
    # Keywords that are not settings: what configure() builds with, not how it is set.
    wiring = {
        "tracer_provider",
        "meter_provider",
        "resource_attributes",
        "set_global",
        "flush_on_signals",
        "cuda",
        "nvml_reader",
    }
    arguments = {row.argument for row in rows(Settings) if row.argument is not None}
    assert set(inspect.signature(tts_otel.configure).parameters) - wiring == arguments


def test_cuda_defaults_to_a_readable_auto() -> None:
    assert inspect.signature(tts_otel.configure).parameters["cuda"].default == "auto"


def test_load_settings_refuses_an_unknown_keyword() -> None:
    with pytest.raises(TypeError, match="timming"):
        load_settings(timming="wall", environ={})


@pytest.mark.parametrize("cls", [Settings, InfluxSettings])
def test_an_empty_variable_means_unset_in_every_group(cls: type[object]) -> None:
    load = load_settings if cls is Settings else influx_settings
    for row in rows(cls):
        for variable in row.variables:
            assert load(environ={variable: ""}) == load(environ={}), variable
            assert getattr(load(environ={variable: ""}), row.name) == row.default, variable


@pytest.mark.parametrize("value", ["1", "yes", "ON", "false", "0", "off", "maybe", " "])
def test_a_flag_means_the_same_in_every_group(value: str) -> None:
    def parsed(load: object) -> bool | str:
        try:
            if load is load_settings:
                return load_settings(environ={"TTS_OTEL_NVML": value}).nvml
            return influx_settings(environ={"TTS_OTEL_INFLUXDB_GZIP": value}).gzip
        except ConfigurationError as error:
            return str(error).partition("Fix:")[2]  # the problem names the variable

    assert parsed(load_settings) == parsed(influx_settings)


def test_an_argument_error_names_the_keyword_and_its_variable() -> None:
    with pytest.raises(ConfigurationError) as raised:
        tts_otel.configure(max_attribute_values=0, set_global=False, nvml=False)
    assert raised.value.setting == "max_attribute_values (TTS_OTEL_MAX_ATTRIBUTE_VALUES)"


def test_the_readme_settings_tables_are_current() -> None:
    script = ROOT / "scripts" / "settings_table.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_otel_metrics_exporter_names_the_metric_exporters_apart_from_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("TTS_OTEL_OUTPUT_DIR", str(tmp_path))
    telemetry = tts_otel.configure(set_global=False, nvml=False, flush_on_signals=False)
    with tts_otel.synthesis(model="m", telemetry=telemetry):
        pass
    telemetry.shutdown()
    assert '"tts.synthesize"' in (tmp_path / "traces.jsonl").read_text()
    metrics = tmp_path / "metrics.jsonl"
    assert not metrics.exists() or "tts.request.duration" not in metrics.read_text()


def test_an_exporter_named_for_metrics_only_has_its_span_exporter_shut_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tts_otel.register_exporter("probe", lambda _s: ExporterParts(spans, reader))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "probe")
    telemetry = tts_otel.configure(set_global=False, nvml=False, flush_on_signals=False)
    with tts_otel.synthesis(model="m", telemetry=telemetry):
        pass
    assert spans._stopped  # not exporting traces: its span exporter holds nothing open
    assert reader.get_metrics_data() is not None
    telemetry.shutdown()


def test_exporters_named_in_code_send_both_signals_whatever_otel_metrics_exporter_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    telemetry = tts_otel.configure(
        exporters="file",
        output_dir=tmp_path,
        set_global=False,
        nvml=False,
        flush_on_signals=False,
    )
    with tts_otel.synthesis(model="m", telemetry=telemetry):
        pass
    telemetry.shutdown()
    assert "tts.request.duration" in (tmp_path / "metrics.jsonl").read_text()


def test_otel_exporter_prometheus_host_and_port_are_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    telemetry = tts_otel.configure(
        exporters="prometheus", set_global=False, nvml=False, flush_on_signals=False
    )
    try:
        assert any(f"127.0.0.1:{port}" in place for place in telemetry.destinations)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert answer.status == 200
    finally:
        telemetry.shutdown()


def test_per_signal_otlp_endpoints_and_headers_are_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = [HTTPServer(("127.0.0.1", 0), _Receiver) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    traces, metrics = (f"http://127.0.0.1:{s.server_port}" for s in servers)
    _Receiver.seen.clear()
    for key, value in {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{traces}/t",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{metrics}/m",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-signal=traces",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-signal=metrics",
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "5000",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        telemetry = tts_otel.configure(
            exporters="otlp", set_global=False, nvml=False, flush_on_signals=False
        )
        with tts_otel.synthesis(model="m", telemetry=telemetry):
            pass
        telemetry.shutdown()
    finally:
        for server in servers:
            server.shutdown()
    assert ("/t", "traces") in _Receiver.seen
    assert ("/m", "metrics") in _Receiver.seen
    assert {path for path, _ in _Receiver.seen} == {"/t", "/m"}
