"""The core works with the OpenTelemetry API and SDK alone; an exporter whose extra is
missing says which extra to install, at configure()."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# What the extras (and the service) bring; the core must not need any of it.
OPTIONAL = (
    "prometheus_client",
    "influxdb_client",
    "google.protobuf",
    "pynvml",
    "torch",
    "numpy",
    "opentelemetry.exporter",
)

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    OPTIONAL = {optional!r}

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == o or name.startswith(o + ".") for o in OPTIONAL):
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Missing())

    import tts_otel
    from tts_otel.testing import capture

    with capture() as cap:
        with tts_otel.synthesis(model="m", sample_rate=24000) as req:
            with req.stage("vocoder"):
                pass
            req.audio(samples=24000)
    assert [s.name for s in cap.spans()] == ["tts.vocoder", "tts.synthesize"]
    assert cap.counter("tts.requests") == 1
    # InfluxDB's v1 API is plain HTTP: only v2 (a TOKEN) needs influxdb-client.
    import os
    os.environ.update(TTS_OTEL_INFLUXDB_TOKEN="t", TTS_OTEL_INFLUXDB_ORG="o",
                      TTS_OTEL_INFLUXDB_BUCKET="b")
    for name, extra in [("influxdb", "influxdb"), ("prometheus", "prometheus"),
                        ("otlp", "otlp"), ("file", "otlp")]:
        try:
            tts_otel.configure(exporters=name, set_global=False)
        except tts_otel.ConfigurationError as error:
            assert f"tts-otel[{{extra}}]" in str(error), error
        else:
            raise AssertionError(name + " configured without its extra")
    # opentelemetry-instrument's configurator with no exporter named: OTLP by
    # default, which without its extra is a warning, not a service that will not start.
    os.environ.pop("TTS_OTEL_EXPORTERS", None)
    os.environ.pop("OTEL_TRACES_EXPORTER", None)
    from opentelemetry import trace
    from tts_otel.autoconfigure import Configurator
    Configurator().configure()
    assert not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    print("core ok")
    """
)


def test_the_core_runs_a_request_without_the_extras_and_names_the_missing_one() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(optional=OPTIONAL)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("core ok")


def test_a_registered_exporter_needs_only_what_tts_otel_exporters_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import tts_otel
    from tts_otel import exporters
    from tts_otel.exporters import ExporterParts, Settings

    # The registry is process-wide: "memory" must not outlive this test (a later test
    # lists the exporters an unknown name can choose from).
    monkeypatch.setattr(exporters, "_registry", dict(exporters._registry))

    spans = InMemorySpanExporter()
    seen: list[Settings] = []

    def in_memory(settings: Settings) -> ExporterParts:
        seen.append(settings)
        return ExporterParts(span_exporter=spans, where="memory")

    tts_otel.register_exporter("memory", in_memory)
    telemetry = tts_otel.configure(
        service_name="svc",
        exporters="memory",
        set_global=False,
        nvml=False,
        flush_on_signals=False,
    )
    try:
        with tts_otel.synthesis(model="m", telemetry=telemetry):
            pass
        telemetry.force_flush()
        assert telemetry.destinations == ("memory",)
        assert seen[0].service_name == "svc"
        assert [s.name for s in spans.get_finished_spans()] == ["tts.synthesize"]
    finally:
        telemetry.shutdown()


LOADED_AT_START = textwrap.dedent(
    """
    import sys
    import tts_otel

    def loaded():
        return {{m for m in {start_time!r} if m in sys.modules}}

    assert loaded() == set(), loaded()
    assert {{"configure", "register_exporter"}} <= set(dir(tts_otel))  # completion sees them
    assert "TYPE_CHECKING" not in dir(tts_otel)  # nor the module's import helpers
    from tts_otel import configure
    tts_otel.register_exporter
    assert loaded() == set({start_time!r}), loaded()
    assert configure is tts_otel.configure
    try:
        tts_otel.no_such_name
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown name resolved")
    print("ok")
    """
)


def test_importing_leaves_what_only_configure_needs_to_configure() -> None:
    """Settings table, exporters and the SDK's export pipeline load when configure() or
    register_exporter() is first used: that keeps ``import tts_otel`` near the SDK's own
    import (benchmarks/import_time.py), and this keeps it there."""
    start_time = (
        "tts_otel._bootstrap",
        "tts_otel.config",
        "tts_otel.exporters",
        "opentelemetry.sdk.trace.export",
    )
    done = subprocess.run(
        [sys.executable, "-c", LOADED_AT_START.format(start_time=start_time)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
