"""What a collection reads from tts-otel: the metric buffer, recorded first, then the drop
counts and the exporters' health, all from every handle on the meter provider."""

from __future__ import annotations

from typing import cast

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric, NumberDataPoint

import tts_otel
from tts_otel import semconv
from tts_otel._metric_buffer import MetricBuffer
from tts_otel.testing import capture


@pytest.fixture(autouse=True)
def _only_collections_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MetricBuffer, "DRAIN_INTERVAL_S", 3600.0)


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def values(metrics: dict[str, Metric], name: str, **attributes: str) -> list[float]:
    points = [cast(NumberDataPoint, p) for p in metrics[name].data.data_points]
    return [
        p.value
        for p in points
        if all((p.attributes or {}).get(k) == v for k, v in attributes.items())
    ]


def test_a_collection_records_what_waits_and_reports_how_much() -> None:
    with capture() as cap:
        for _ in range(3):
            with tts_otel.synthesis(model="m"):
                pass
        first = cap.metrics()  # one collection: it records the buffer before reading
        assert values(first, semconv.METRIC_REQUESTS) == [3]
        # A bare request records two measurements: its duration and its count.
        assert values(first, semconv.METRIC_TELEMETRY_BUFFERED) == [3 * 2]
        assert values(cap.metrics(), semconv.METRIC_TELEMETRY_BUFFERED) == [0]


def test_a_measurement_refused_while_a_collection_records_counts_in_that_collection() -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OverflowError("int too large to convert")

    with capture() as cap:
        buffer = cast(MetricBuffer, cap.telemetry.buffer)
        buffer.push([(refuse, 1, {}, None)])
        first = cap.metrics()
        assert values(
            first, semconv.METRIC_TELEMETRY_DROPPED, **{semconv.ATTR_TELEMETRY_SIGNAL: "metrics"}
        ) == [1]


def test_a_second_handle_on_the_same_meter_provider_is_collected_too() -> None:
    """configure() twice on one provider: the SDK keeps the first callbacks registered under
    a name, so the second handle's buffer was never recorded at collection."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    handles = []
    try:
        for _ in range(2):
            handles.append(
                tts_otel.configure(
                    meter_provider=provider,
                    set_global=False,
                    nvml=False,
                    gpu_memory=False,
                    flush_on_signals=False,
                )
            )
            with tts_otel.synthesis(model="m", telemetry=handles[-1]):
                pass
        handles[1].values.reject("sample_rate", -1, "negative")
        metrics = collect(reader)
        assert values(metrics, semconv.METRIC_REQUESTS) == [2]
        assert values(
            metrics,
            semconv.METRIC_TELEMETRY_DROPPED,
            **{semconv.ATTR_TELEMETRY_SIGNAL: "invalid_value"},
        ) == [1]
    finally:
        for handle in handles:
            handle.shutdown()
        provider.shutdown()


def test_each_exporters_health_is_read_once_per_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk spool's report lists its folder: five reads per collection were five scans."""
    from tts_otel import exporters
    from tts_otel.exporters import ExporterParts, Settings

    reads: list[int] = []

    def report() -> list[tuple[str, int]]:
        reads.append(1)
        return [
            ("sent", 7),
            ("dropped", 2),
            ("spooled", 3),
            ("spool_bytes", 300),
            ("spool_limit_bytes", 1000),
        ]

    def spooling(_settings: Settings) -> ExporterParts:
        return ExporterParts(where="memory", health=("spooling", report))

    monkeypatch.setattr(exporters, "_registry", dict(exporters._registry))
    tts_otel.register_exporter("spooling", spooling)
    with capture(exporters="spooling") as cap:
        metrics = cap.metrics()  # one collection
        assert len(reads) == 1
    exporter = {semconv.ATTR_EXPORTER: "spooling"}
    assert values(
        metrics,
        semconv.METRIC_EXPORTER_POINTS,
        **exporter,
        **{semconv.ATTR_EXPORTER_OUTCOME: "dropped"},
    ) == [2]
    assert values(metrics, semconv.METRIC_EXPORTER_SPOOL_POINTS, **exporter) == [3]
    assert values(metrics, semconv.METRIC_EXPORTER_SPOOL_USAGE, **exporter) == [300]
    assert values(
        metrics, semconv.METRIC_TELEMETRY_DROPPED, **{semconv.ATTR_TELEMETRY_SIGNAL: "export"}
    ) == [2]
