"""Grafana dashboards for tts-otel, generated from code: one over Prometheus, one over InfluxDB.

    python dashboards/generate.py          # write dashboards/*.json
    python dashboards/generate.py --check  # fail if the committed JSON is stale

Both answer the operator's questions: which stage got slower, since when, for
which configuration; is the service faster than real time; how much GPU
memory a request takes. Generation fails when a Prometheus panel queries a
metric tts-otel does not emit. The InfluxDB dashboard reads latency from raw
span durations: Grafana cannot de-accumulate the cumulative bucket fields the
collector's schema writes. tests/operations/test_dashboards.py runs every query, with
Grafana's variables substituted, against a real Prometheus and a real influxd
filled by a real run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from tts_otel import semconv

HERE = Path(__file__).parent
Json = dict[str, Any]

# The metrics the Prometheus dashboard reads, with the units their instruments declare.
HISTOGRAM_UNITS = {
    semconv.METRIC_REQUEST_DURATION: semconv.UNIT_SECONDS,
    semconv.METRIC_STAGE_DURATION: semconv.UNIT_SECONDS,
    semconv.METRIC_STAGE_GPU_DURATION: semconv.UNIT_SECONDS,
    semconv.METRIC_TIME_TO_FIRST_AUDIO: semconv.UNIT_SECONDS,
    semconv.METRIC_REAL_TIME_FACTOR: semconv.UNIT_RATIO,
    semconv.METRIC_AUDIO_DURATION: semconv.UNIT_SECONDS,
    semconv.METRIC_GPU_MEMORY_PEAK: semconv.UNIT_BYTES,
    semconv.METRIC_AUDIO_UNDERRUN: semconv.UNIT_SECONDS,
    semconv.METRIC_QUEUE_WAIT: semconv.UNIT_SECONDS,
}
COUNTER_UNITS = {
    semconv.METRIC_REQUESTS: semconv.UNIT_REQUESTS,
    semconv.METRIC_TELEMETRY_DROPPED: semconv.UNIT_POINTS,
    semconv.METRIC_EXPORTER_POINTS: semconv.UNIT_POINTS,
}
GAUGE_UNITS = {
    semconv.METRIC_EXPORTER_SPOOL_POINTS: semconv.UNIT_POINTS,
    semconv.METRIC_EXPORTER_SPOOL_USAGE: semconv.UNIT_BYTES,
    semconv.METRIC_EXPORTER_SPOOL_LIMIT: semconv.UNIT_BYTES,
    semconv.METRIC_HW_GPU_MEMORY_USAGE: semconv.UNIT_BYTES,
    semconv.METRIC_HW_GPU_MEMORY_LIMIT: semconv.UNIT_BYTES,
    semconv.METRIC_HW_GPU_UTILIZATION: semconv.UNIT_RATIO,
    semconv.METRIC_HW_POWER: semconv.UNIT_WATTS,
    semconv.METRIC_HW_TEMPERATURE: semconv.UNIT_CELSIUS,
    semconv.METRIC_GPU_THROTTLED: semconv.UNIT_RATIO,
}
# Prometheus's names for OpenTelemetry metrics, as the Python exporter and the collector
# both write them: runs of characters other than letters, digits and ":" become "_", the
# unit's word follows (an annotation such as {request} is no unit, and "1" adds none),
# counters end in _total, and a histogram is its _bucket, _sum and _count series.
UNIT_WORDS = {
    semconv.UNIT_SECONDS: "seconds",
    semconv.UNIT_BYTES: "bytes",
    semconv.UNIT_WATTS: "watts",
    semconv.UNIT_CELSIUS: "celsius",
}


def prometheus_name(name: str, unit: str, *, counter: bool = False) -> str:
    words = [re.sub(r"[^a-zA-Z0-9:]+", "_", name)]
    word = UNIT_WORDS.get(unit, "")
    if word and not words[0].endswith("_" + word):
        words.append(word)
    if counter:
        words.append("total")
    return "_".join(words)


HISTOGRAMS = {name: prometheus_name(name, unit) for name, unit in HISTOGRAM_UNITS.items()}
COUNTERS = {name: prometheus_name(name, unit, counter=True) for name, unit in COUNTER_UNITS.items()}
GAUGES = {name: prometheus_name(name, unit) for name, unit in GAUGE_UNITS.items()}
EMITTED = frozenset(
    {f"{name}_{suffix}" for name in HISTOGRAMS.values() for suffix in ("bucket", "sum", "count")}
    | set(COUNTERS.values())
    | set(GAUGES.values())
)
# Series that exist only with a GPU (torch and CUDA, NVML), with an exporter that spools
# (InfluxDB, OTLP), with streaming requests, or behind a queue that reports its wait
# (the GLM-TTS web UI): tests without them check these queries run, not that they answer.
CONDITIONAL = frozenset(
    {
        HISTOGRAMS[semconv.METRIC_STAGE_GPU_DURATION],
        HISTOGRAMS[semconv.METRIC_GPU_MEMORY_PEAK],
        HISTOGRAMS[semconv.METRIC_AUDIO_UNDERRUN],
        HISTOGRAMS[semconv.METRIC_QUEUE_WAIT],
        COUNTERS[semconv.METRIC_EXPORTER_POINTS],
        *GAUGES.values(),
    }
)

NS = 1000000000  # nanoseconds a second; InfluxQL 1.6 cannot parse 1e9
TARGET_FILTER = 'job=~"$job", instance=~"$instance"'
STAGE_FILTER = f'tts_stage=~"$stage", tts_model_name=~"$model", {TARGET_FILTER}'
REQUEST_FILTER = f'tts_model_name=~"$model", {TARGET_FILTER}'


def _quantile(q: float, histogram: str, by: str, selector: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
        f"(rate({histogram}_bucket{{{selector}}}[$__rate_interval])))"
    )


# What each panel shows, by title: (panel type, unit, description). Both dashboards
# answer the same questions; only their queries differ.
PANELS: dict[str, tuple[str, str, str]] = {
    "Requests per second": ("timeseries", "reqps", "Finished requests by outcome (ok, error)."),
    "Requests per interval": ("timeseries", "short", "Request spans that ended in each interval."),
    "Request latency": ("timeseries", "s", "Wall time of whole requests."),
    "Stage latency p95": ("timeseries", "s", "Which stage got slower, and since when."),
    "Stage latency distribution": ("heatmap", "s", "Durations of the selected stages, bucketed."),
    "Stage latency p95 by sample rate and KV cache": (
        "timeseries",
        "s",
        "The same latency, split by configuration.",
    ),
    "Real-time factor p50 (below 1: faster than real time)": (
        "timeseries",
        "none",
        "Processing time over audio duration.",
    ),
    "Real-time factor, mean per interval": (
        "timeseries",
        "none",
        "From the cumulative histogram: sum and count differences.",
    ),
    "Time to first audio p95": (
        "timeseries",
        "s",
        "How long a listener waits for the first chunk.",
    ),
    "Peak GPU memory per request p95": (
        "timeseries",
        "bytes",
        "Peaks that grow from request to request are a leak (needs torch and CUDA).",
    ),
    "Stage GPU time p95 (CUDA events)": (
        "timeseries",
        "s",
        "GPU time per stage, with timing=cuda_events.",
    ),
    "Telemetry dropped": (
        "timeseries",
        "short",
        "Items tts-otel dropped: buffer overflow, invalid values, failed exports.",
    ),
    "Queue wait p95": (
        "timeseries",
        "s",
        "Time requests waited in the server's queue before their handler ran.",
    ),
    "Streaming underrun p95": (
        "timeseries",
        "s",
        "Seconds a listener starting at the first chunk waits for later ones.",
    ),
    "Exporter points per second": ("timeseries", "short", "Points each exporter sent and dropped."),
    "Exporter spool": (
        "timeseries",
        "percentunit",
        "Share of each exporter's spool bound in use: above 0 the backend is not taking points.",
    ),
    "GPU memory in use": (
        "timeseries",
        "percentunit",
        "NVML: memory used over the GPU's total; a steady climb is a leak.",
    ),
    "GPU utilization, power, temperature": (
        "timeseries",
        "none",
        "NVML: share of time a kernel ran, watts, degrees Celsius.",
    ),
    "GPU throttling": ("timeseries", "short", "NVML: 1 while a throttle reason is active."),
}


def _panel(title: str, *targets: Json) -> Json:
    kind, unit, description = PANELS[title]
    return {
        "title": title,
        "type": kind,
        "description": description,
        "targets": list(targets),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
    }


def _layout(panels: list[Json], datasource: Json) -> list[Json]:
    """Two panels a row, 12 columns each; ids and refIds in order."""
    for index, panel in enumerate(panels):
        panel["id"] = index + 1
        panel["gridPos"] = {"x": 12 * (index % 2), "y": 8 * (index // 2), "w": 12, "h": 8}
        panel["datasource"] = datasource
        for number, target in enumerate(panel["targets"]):
            target["refId"] = chr(ord("A") + number)
            target["datasource"] = datasource
    return panels


def _dashboard(uid: str, title: str, variables: list[Json], panels: list[Json]) -> Json:
    return {
        "uid": uid,
        "title": title,
        "tags": ["tts", "tts-otel"],
        "schemaVersion": 39,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": variables},
        "panels": panels,
    }


def _datasource_variable(plugin: str) -> Json:
    return {"name": "datasource", "type": "datasource", "query": plugin, "label": "Data source"}


def _query_variable(name: str, query: str, datasource: Json) -> Json:
    return {
        "name": name,
        "type": "query",
        "query": query,
        "datasource": datasource,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }


def prometheus_dashboard() -> Json:
    request, stage = (
        HISTOGRAMS[semconv.METRIC_REQUEST_DURATION],
        HISTOGRAMS[semconv.METRIC_STAGE_DURATION],
    )
    prom = {"type": "prometheus", "uid": "${datasource}"}

    def target(expr: str, legend: str, **extra: Any) -> Json:
        return {"expr": expr, "legendFormat": legend, **extra}

    panels = [
        _panel(
            "Requests per second",
            target(
                f"sum by (tts_outcome) (rate({COUNTERS[semconv.METRIC_REQUESTS]}"
                f"{{{REQUEST_FILTER}}}[$__rate_interval]))",
                "{{tts_outcome}}",
            ),
        ),
        _panel(
            "Request latency",
            *(
                target(_quantile(q, request, "", REQUEST_FILTER), f"p{round(q * 100)}")
                for q in (0.5, 0.95, 0.99)
            ),
        ),
        _panel(
            "Stage latency p95",
            target(
                _quantile(0.95, stage, "tts_stage", STAGE_FILTER),
                "{{tts_stage}}",
            ),
        ),
        _panel(
            "Stage latency distribution",
            target(
                f"sum by (le) (increase({stage}_bucket{{{STAGE_FILTER}}}[$__rate_interval]))",
                "{{le}}",
                format="heatmap",
            ),
        ),
        _panel(
            "Stage latency p95 by sample rate and KV cache",
            target(
                _quantile(0.95, stage, "tts_stage, tts_sample_rate, tts_kv_cache", STAGE_FILTER),
                "{{tts_stage}} {{tts_sample_rate}} Hz kv={{tts_kv_cache}}",
            ),
        ),
        _panel(
            "Real-time factor p50 (below 1: faster than real time)",
            target(
                _quantile(0.5, HISTOGRAMS[semconv.METRIC_REAL_TIME_FACTOR], "", REQUEST_FILTER),
                "p50",
            ),
        ),
        _panel(
            "Time to first audio p95",
            target(
                _quantile(0.95, HISTOGRAMS[semconv.METRIC_TIME_TO_FIRST_AUDIO], "", REQUEST_FILTER),
                "p95",
            ),
        ),
        _panel(
            "Peak GPU memory per request p95",
            target(
                _quantile(
                    0.95, HISTOGRAMS[semconv.METRIC_GPU_MEMORY_PEAK], "tts_stage", STAGE_FILTER
                ),
                "{{tts_stage}}",
            ),
        ),
        _panel(
            "Stage GPU time p95 (CUDA events)",
            target(
                _quantile(
                    0.95, HISTOGRAMS[semconv.METRIC_STAGE_GPU_DURATION], "tts_stage", STAGE_FILTER
                ),
                "{{tts_stage}}",
            ),
        ),
        _panel(
            "Telemetry dropped",
            target(
                f"sum by (tts_telemetry_signal) "
                f"(rate({COUNTERS[semconv.METRIC_TELEMETRY_DROPPED]}{{{TARGET_FILTER}}}"
                "[$__rate_interval]))",
                "{{tts_telemetry_signal}}",
            ),
        ),
        _panel(
            "Queue wait p95",
            target(
                _quantile(0.95, HISTOGRAMS[semconv.METRIC_QUEUE_WAIT], "", REQUEST_FILTER),
                "p95",
            ),
        ),
        _panel(
            "Streaming underrun p95",
            target(
                _quantile(0.95, HISTOGRAMS[semconv.METRIC_AUDIO_UNDERRUN], "", REQUEST_FILTER),
                "p95",
            ),
        ),
        _panel(
            "Exporter points per second",
            target(
                f"sum by (tts_exporter, tts_exporter_outcome) "
                f"(rate({COUNTERS[semconv.METRIC_EXPORTER_POINTS]}{{{TARGET_FILTER}}}"
                "[$__rate_interval]))",
                "{{tts_exporter}} {{tts_exporter_outcome}}",
            ),
        ),
        _panel(
            "Exporter spool",
            target(
                f"max by (instance, tts_exporter) "
                f"({GAUGES[semconv.METRIC_EXPORTER_SPOOL_USAGE]}{{{TARGET_FILTER}}} "
                f"/ {GAUGES[semconv.METRIC_EXPORTER_SPOOL_LIMIT]}{{{TARGET_FILTER}}})",
                "{{instance}} {{tts_exporter}}",
            ),
        ),
        _panel(
            "GPU memory in use",
            target(
                f"{GAUGES[semconv.METRIC_HW_GPU_MEMORY_USAGE]}{{{TARGET_FILTER}}} "
                f"/ {GAUGES[semconv.METRIC_HW_GPU_MEMORY_LIMIT]}{{{TARGET_FILTER}}}",
                "{{instance}} GPU {{hw_id}}",
            ),
        ),
        _panel(
            "GPU utilization, power, temperature",
            target(
                f"{GAUGES[semconv.METRIC_HW_GPU_UTILIZATION]}{{{TARGET_FILTER}}}",
                "{{instance}} GPU {{hw_id}} utilization",
            ),
            target(
                f'{GAUGES[semconv.METRIC_HW_POWER]}{{hw_type="gpu", {TARGET_FILTER}}}',
                "{{instance}} GPU {{hw_id}} W",
            ),
            target(
                f'{GAUGES[semconv.METRIC_HW_TEMPERATURE]}{{hw_type="gpu", {TARGET_FILTER}}}',
                "{{instance}} GPU {{hw_id}} °C",
            ),
        ),
        _panel(
            "GPU throttling",
            target(
                f"max by (instance, hw_id, tts_gpu_throttle_reason) "
                f"({GAUGES[semconv.METRIC_GPU_THROTTLED]}{{{TARGET_FILTER}}})",
                "{{instance}} GPU {{hw_id}} {{tts_gpu_throttle_reason}}",
            ),
        ),
    ]
    requests_total = COUNTERS[semconv.METRIC_REQUESTS]
    variables = [
        _datasource_variable("prometheus"),
        _query_variable("job", f"label_values({requests_total}, job)", prom),
        _query_variable(
            "instance", f'label_values({requests_total}{{job=~"$job"}}, instance)', prom
        ),
        _query_variable("model", f"label_values({request}_count, tts_model_name)", prom),
        _query_variable("stage", f"label_values({stage}_count, tts_stage)", prom),
    ]
    dashboard = _dashboard(
        "tts-otel-prometheus", "TTS (Prometheus)", variables, _layout(panels, prom)
    )
    _check_metrics(dashboard)
    return dashboard


def influxdb_dashboard() -> Json:
    influx = {"type": "influxdb", "uid": "${datasource}"}
    stages = '"tts.stage" =~ /^$stage$/'
    requests = f"\"span.name\" = '{semconv.SPAN_SYNTHESIZE}'"

    def target(query: str, alias: str = "") -> Json:
        return {"query": query, "rawQuery": True, "resultFormat": "time_series", "alias": alias}

    seconds = f'/ {NS} FROM "spans" WHERE $timeFilter'
    panels = [
        _panel(
            "Requests per interval",
            target(
                f'SELECT count("duration_nano") FROM "spans" WHERE $timeFilter AND {requests} '
                "GROUP BY time($__interval) fill(0)",
                "requests",
            ),
        ),
        _panel(
            "Request latency",
            *(
                target(
                    f'SELECT percentile("duration_nano", {q}) {seconds} AND {requests} '
                    "GROUP BY time($__interval) fill(none)",
                    f"p{q}",
                )
                for q in (50, 95, 99)
            ),
        ),
        _panel(
            "Stage latency p95",
            target(
                f'SELECT percentile("duration_nano", 95) {seconds} AND {stages} '
                'GROUP BY time($__interval), "tts.stage" fill(none)',
                "$tag_tts.stage",
            ),
        ),
        _panel(
            "Stage latency distribution",
            target(
                f'SELECT "duration_nano" {seconds} AND {stages}',
            ),
        ),
        _panel(
            "Stage latency p95 by sample rate and KV cache",
            target(
                f'SELECT percentile("duration_nano", 95) {seconds} AND {stages} '
                'GROUP BY time($__interval), "tts.stage", "tts.sample_rate", "tts.kv_cache" '
                "fill(none)",
                "$tag_tts.stage $tag_tts.sample_rate Hz kv=$tag_tts.kv_cache",
            ),
        ),
        _panel(
            "Real-time factor, mean per interval",
            target(
                'SELECT non_negative_difference(last("sum")) '
                '/ non_negative_difference(last("count")) '
                f'FROM "{semconv.METRIC_REAL_TIME_FACTOR}" '
                "WHERE $timeFilter GROUP BY time($__interval) fill(none)",
                "mean",
            ),
        ),
    ]
    variables = [
        _datasource_variable("influxdb"),
        _query_variable("stage", 'SHOW TAG VALUES FROM "spans" WITH KEY = "tts.stage"', influx),
    ]
    return _dashboard("tts-otel-influxdb", "TTS (InfluxDB)", variables, _layout(panels, influx))


def _check_metrics(dashboard: Json) -> None:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # A metric name is the one word followed by a selector or a range.
            unknown = set(re.findall(r"\b((?:tts|hw)_[a-z_]+)[{\[]", target["expr"])) - EMITTED
            if unknown:
                raise ValueError(
                    f"panel {panel['title']!r} queries {sorted(unknown)}, "
                    "which tts-otel does not emit"
                )


DASHBOARDS = {"tts-prometheus.json": prometheus_dashboard, "tts-influxdb.json": influxdb_dashboard}


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = parser.parse_args(argv)
    stale = []
    for file_name, build in DASHBOARDS.items():
        path, text = HERE / file_name, render(build())
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(file_name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
