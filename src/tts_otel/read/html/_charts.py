"""The page's charts, one function each: plotly figures built from the aggregated samples.

Each takes plotly's ``graph_objects`` as ``go`` (imported by the caller, only
when a page is drawn) and returns a figure; none reads the span stream.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from tts_otel import semconv
from tts_otel.read.html._aggregate import Sample, configuration_of, number
from tts_otel.read.records import SpanRecord

TREND_BUCKETS: Final = 40
_LAYOUT: Final[dict[str, Any]] = {
    "template": "plotly_white",
    "height": 440,
    "margin": {"l": 70, "r": 30, "t": 50, "b": 60},
    "legend": {"orientation": "h", "y": -0.18},
}
_BIN_ORDER: Final = (semconv.LENGTH_BIN_SHORT, semconv.LENGTH_BIN_MEDIUM, semconv.LENGTH_BIN_LONG)
_ROOT_COLOUR: Final = "#7f7f7f"
_ERROR_COLOUR: Final = "#d62728"
_INTERVAL: Final = ("diff", "low", "high")


def when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _trend(points: Sequence[tuple[int, float]]) -> tuple[list[datetime], list[float]]:
    """Median latency per time bucket over the sample (``TREND_BUCKETS`` buckets)."""
    start = min(t for t, _ in points)
    width = max(1, (max(t for t, _ in points) - start) // TREND_BUCKETS + 1)
    buckets: dict[int, list[float]] = {}
    for t, seconds in points:
        buckets.setdefault((t - start) // width, []).append(seconds)
    times = [when(start + index * width + width // 2) for index in sorted(buckets)]
    return times, [statistics.median(buckets[index]) * 1000 for index in sorted(buckets)]


def _palette(count: int) -> list[str]:
    colours = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#ff7f0e",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
        "#bcbd22",
        "#7f7f7f",
    ]
    return [colours[index % len(colours)] for index in range(count)]


def over_time(go: Any, title: str, series: Mapping[str, Sample[tuple[int, float]]]) -> Any:
    """Sampled points, faint, and the median per time bucket as a line, one colour per series."""
    figure = go.Figure()
    palette = _palette(len(series))
    for (name, sample), colour in zip(sorted(series.items()), palette, strict=True):
        ordered = sorted(sample.items)
        figure.add_trace(
            go.Scatter(
                x=[when(t) for t, _ in ordered],
                y=[s * 1000 for _, s in ordered],
                mode="markers",
                name=f"{name} (sample)",
                legendgroup=name,
                showlegend=False,
                marker={"size": 4, "opacity": 0.3, "color": colour},
            )
        )
        times, medians = _trend(ordered)
        figure.add_trace(
            go.Scatter(
                x=times,
                y=medians,
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line={"color": colour, "width": 2},
            )
        )
    figure.update_layout(
        title=title, yaxis_title="latency (ms)", xaxis_title="time (UTC)", **_LAYOUT
    )
    return figure


def memory_chart(go: Any, memory: Mapping[str, Sample[tuple[float, float]]]) -> Any:
    figure = go.Figure()
    for (name, sample), colour in zip(sorted(memory.items()), _palette(len(memory)), strict=True):
        figure.add_trace(
            go.Scatter(
                x=[audio for audio, _ in sample.items],
                y=[mib for _, mib in sample.items],
                mode="markers",
                name=name,
                marker={"size": 6, "opacity": 0.7, "color": colour},
            )
        )
    figure.update_layout(
        title="Peak GPU memory against audio duration",
        xaxis_title="audio duration (s)",
        yaxis_title="peak GPU memory (MiB)",
        **_LAYOUT,
    )
    return figure


def length_chart(go: Any, by_length: Mapping[tuple[str, str], Sample[float]]) -> Any:
    figure = go.Figure()
    configurations = sorted({configuration for _, configuration in by_length})
    for configuration, colour in zip(configurations, _palette(len(configurations)), strict=True):
        xs: list[str] = []
        ys: list[float] = []
        for (length_bin, name), sample in sorted(by_length.items()):
            if name == configuration:
                xs += [length_bin] * len(sample.items)
                ys += [seconds * 1000 for seconds in sample.items]
        figure.add_trace(
            go.Box(x=xs, y=ys, name=configuration, marker={"color": colour}, boxpoints=False)
        )
    bins = {length_bin for length_bin, _ in by_length}
    order = [b for b in _BIN_ORDER if b in bins] + sorted(bins - set(_BIN_ORDER))
    figure.update_layout(
        title="Latency by text length bin",
        yaxis_title="latency (ms)",
        xaxis_title="text length bin",
        boxmode="group",
        **_LAYOUT,
    )
    figure.update_xaxes(categoryorder="array", categoryarray=order)
    return figure


def _stage_colour(stage: str) -> str:
    """The same colour for a stage in every waterfall; nested stages share their parent's."""
    top = stage.split(".")[0]
    known = [stage for stage in semconv.STAGE_ORDER if "." not in stage]
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    index = known.index(top) if top in known else len(known) + sum(map(ord, top)) % 2
    return palette[index]


def waterfall(go: Any, spans: Sequence[SpanRecord]) -> Any:
    """One request: each span a bar on the request's time axis, children under their parent."""
    by_id = {span.span_id: span for span in spans if span.span_id}

    def depth(span: SpanRecord) -> int:
        level, seen = 0, set()
        while span.parent_id in by_id and span.parent_id not in seen:
            seen.add(span.parent_id)
            span, level = by_id[span.parent_id], level + 1
        return level

    ordered = sorted(spans, key=lambda s: (s.start_ns, -s.end_ns))
    root = next(s for s in spans if s.name == semconv.SPAN_SYNTHESIZE)
    t0 = min(s.start_ns for s in ordered)
    labels, hovers, colours = [], [], []
    for span in ordered:
        attributes = span.attributes
        label = "\u2003" * depth(span) + span.name
        segment = attributes.get(semconv.ATTR_SEGMENT_INDEX)
        if segment is not None:
            label += f" [{segment}]"
        details = [f"{span.name}", f"{(span.end_ns - span.start_ns) / 1e6:.1f} ms"]
        gpu = number(attributes.get(semconv.ATTR_STAGE_GPU_DURATION))
        if gpu is not None:
            details.append(f"GPU {gpu * 1000:.1f} ms")
        error = attributes.get(semconv.ATTR_ERROR_TYPE)
        if error is not None:
            details.append(f"error: {error}")
        labels.append(html.escape(label))
        hovers.append("<br>".join(html.escape(d) for d in details))
        failed = error is not None or attributes.get(semconv.ATTR_OUTCOME) == semconv.OUTCOME_ERROR
        stage = attributes.get(semconv.ATTR_STAGE)
        colours.append(
            _ERROR_COLOUR if failed else _stage_colour(str(stage)) if stage else _ROOT_COLOUR
        )
    rows = list(range(len(ordered)))
    figure = go.Figure(
        go.Bar(
            y=rows,
            x=[(s.end_ns - s.start_ns) / 1e6 for s in ordered],
            base=[(s.start_ns - t0) / 1e6 for s in ordered],
            orientation="h",
            marker={"color": colours},
            hovertext=hovers,
            hoverinfo="text",
            text=[f"{(s.end_ns - s.start_ns) / 1e6:.0f} ms" for s in ordered],
            textposition="auto",
        )
    )
    configuration = html.escape(configuration_of(root.attributes))
    figure.update_layout(
        title=f"{(root.end_ns - root.start_ns) / 1e6:.0f} ms \u2014 trace {root.trace_id}"
        f" span {root.span_id}"
        f" \u2014 {configuration} \u2014 {when(root.start_ns):%Y-%m-%d %H:%M:%S} UTC",
        template="plotly_white",
        height=max(220, 60 + 22 * len(ordered)),
        margin={"l": 260, "r": 30, "t": 50, "b": 40},
        xaxis_title="ms since the request began",
        showlegend=False,
        title_font_size=13,  # a long title, clear of the toolbar
    )
    figure.update_yaxes(tickvals=rows, ticktext=labels, autorange="reversed")
    return figure


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float | str) else math.nan


def comparison_chart(go: Any, subplots: Any, rows: Sequence[Mapping[str, object]]) -> Any:
    """Each difference B - A with its 95% interval; a zero line to read the verdict against."""
    metrics = list(dict.fromkeys(str(row["metric"]) for row in rows))
    figure = subplots.make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    for column, metric in enumerate(metrics, start=1):
        chosen = [row for row in rows if str(row["metric"]) == metric]
        scale = 1.0 if metric == "rtf" else 1000.0  # latencies in ms, the RTF as it is
        diff, low, high = ([_float(row[key]) * scale for row in chosen] for key in _INTERVAL)
        figure.add_trace(
            go.Scatter(
                x=diff,
                y=[str(row["stage"]) for row in chosen],
                mode="markers",
                name=metric,
                marker={"size": 10, "color": "#1f77b4"},
                showlegend=False,
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - d for h, d in zip(high, diff, strict=True)],
                    "arrayminus": [d - lo for lo, d in zip(low, diff, strict=True)],
                },
            ),
            row=1,
            col=column,
        )
        figure.add_vline(x=0, line={"color": "#7f7f7f", "dash": "dash"}, row=1, col=column)
        unit = " (ms)" if metric != "rtf" else ""
        figure.update_xaxes(title_text=f"B \u2212 A{unit}", row=1, col=column)
    per_panel = math.ceil(len(rows) / len(metrics))
    figure.update_layout(
        title="Comparison: difference B \u2212 A with its 95% interval",
        template="plotly_white",
        height=max(320, 140 + 40 * per_panel),
        margin={"l": 140, "r": 30, "t": 90, "b": 60},
    )
    return figure
