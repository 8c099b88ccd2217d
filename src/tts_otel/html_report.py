"""``tts-otel report --html FILE``: one self-contained HTML page of charts, readable offline.

The page holds the source article's three charts (latency over time by
configuration; peak GPU memory against audio duration; latency by text length
bin), each stage's latency over time, the slowest requests as waterfalls and,
when given, an A/B comparison. plotly draws them; its JavaScript is inlined
once, so the file opens with no network (install the ``html`` extra). Charts are
SVG, not WebGL: a browser without a GPU (or WebGL turned off) draws them too.

Spans are consumed once, as they stream (from a file or InfluxDB, millions of
them): what the charts need is aggregated on the way, in bounded memory.
Each chart series keeps a uniform random sample (reservoir sampling, seeded,
so a report is reproducible) of at most ``SAMPLE_SIZE`` points; counts are
exact. The slowest requests keep their whole trace; spans that arrive before
their request's root span wait in a bounded buffer (``PENDING_SPANS``), so a
slow request whose spans came very far ahead of its root may be drawn
without them.
"""

from __future__ import annotations

import heapq
import html
import importlib
import math
import pathlib
import random
import statistics
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from tts_otel import semconv
from tts_otel.report import SpanRecord

__all__ = ["MissingExtraError", "write_html"]

SAMPLE_SIZE: Final = 2000
SLOWEST: Final = 5
MAX_CONFIGURATIONS: Final = 12
PENDING_SPANS: Final = 100_000
SPANS_PER_TRACE: Final = 500
TREND_BUCKETS: Final = 40
OTHER: Final = "other"
_MIB: Final = 1024 * 1024
_T = TypeVar("_T")


class MissingExtraError(ImportError):
    """plotly is not installed; the message names the extra that brings it."""


def _plotly() -> tuple[Any, Any]:
    """``(plotly.graph_objects, plotly.subplots)``, imported only when a report is drawn."""
    try:
        # importlib keeps plotly (untyped) out of mypy's view and out of import time.
        graph_objects = importlib.import_module("plotly.graph_objects")
        subplots = importlib.import_module("plotly.subplots")
    except ImportError:
        raise MissingExtraError(
            "the HTML report draws its charts with plotly, which is not installed: "
            "pip install 'tts-otel[html]'"
        ) from None
    return graph_objects, subplots


class _Sample(Generic[_T]):
    """At most ``size`` items, a uniform random sample of all added (Vitter's algorithm R)."""

    __slots__ = ("items", "rng", "seen", "size")

    def __init__(self, rng: random.Random, size: int = SAMPLE_SIZE) -> None:
        self.items: list[_T] = []
        self.rng, self.size, self.seen = rng, size, 0

    def add(self, item: _T) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < self.size:
                self.items[slot] = item


class _Slowest:
    """The ``n`` slowest requests (``tts.synthesize`` spans) with every span of their trace."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[tuple[int, str]] = []  # (duration ns, trace id), fastest first
        self.kept: dict[str, list[SpanRecord]] = {}
        # Spans whose trace has no root yet (an SDK exports children first), oldest first.
        self._pending: OrderedDict[str, list[SpanRecord]] = OrderedDict()
        self._pending_spans = 0
        # Traces already ruled out, so their late spans are not buffered again.
        self._out: OrderedDict[str, None] = OrderedDict()

    def add(self, span: SpanRecord) -> None:
        trace = span.trace_id
        kept = self.kept.get(trace)
        if kept is not None:
            if len(kept) < SPANS_PER_TRACE:
                kept.append(span)
        elif trace in self._out:
            return
        elif span.name == semconv.SPAN_SYNTHESIZE:
            self._decide(trace, span)
        else:
            waiting = self._pending.setdefault(trace, [])
            if len(waiting) < SPANS_PER_TRACE:
                waiting.append(span)
                self._pending_spans += 1
            while self._pending_spans > PENDING_SPANS:
                _, dropped = self._pending.popitem(last=False)
                self._pending_spans -= len(dropped)

    def _decide(self, trace: str, root: SpanRecord) -> None:
        spans = self._pending.pop(trace, [])
        self._pending_spans -= len(spans)
        spans.append(root)
        duration = root.end_ns - root.start_ns
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, (duration, trace))
        elif self._heap and duration > self._heap[0][0]:
            _, evicted = heapq.heapreplace(self._heap, (duration, trace))
            del self.kept[evicted]
            self._rule_out(evicted)
        else:
            self._rule_out(trace)
            return
        self.kept[trace] = spans

    def _rule_out(self, trace: str) -> None:
        self._out[trace] = None
        if len(self._out) > PENDING_SPANS:
            self._out.popitem(last=False)

    def slowest_first(self) -> list[list[SpanRecord]]:
        return [self.kept[trace] for _, trace in sorted(self._heap, reverse=True)]


def _configuration(attributes: Mapping[str, Any]) -> str:
    """The source article's configuration: KV cache, sample rate and model version."""
    parts = []
    for key, label in (
        (semconv.ATTR_KV_CACHE, "kv_cache"),
        (semconv.ATTR_SAMPLE_RATE, "sample_rate"),
        (semconv.ATTR_MODEL_VERSION, "model"),
    ):
        value = attributes.get(key)
        if value is not None:
            parts.append(f"{label}={str(value).lower() if isinstance(value, bool) else value}")
    return " ".join(parts) or "all requests"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class _Aggregate:
    """Everything the page draws, gathered in one pass over the spans."""

    def __init__(self, slowest: int) -> None:
        self.rng = random.Random(0)
        self.spans = self.requests = self.errors = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.configurations: set[str] = set()
        self.latency: dict[str, _Sample[tuple[int, float]]] = {}
        self.memory: dict[str, _Sample[tuple[float, float]]] = {}
        self.by_length: dict[tuple[str, str], _Sample[float]] = {}
        self.stages: dict[str, _Sample[tuple[int, float]]] = {}
        self.stage_counts: dict[str, int] = {}
        self.slowest = _Slowest(slowest)

    def _sample(self, table: dict[Any, _Sample[Any]], key: Any) -> _Sample[Any]:
        sample = table.get(key)
        if sample is None:
            sample = table[key] = _Sample(self.rng)
        return sample

    def add(self, span: SpanRecord) -> None:
        self.spans += 1
        start, seconds = span.start_ns, (span.end_ns - span.start_ns) / 1e9
        self.first_ns = start if self.first_ns is None else min(self.first_ns, start)
        self.last_ns = span.end_ns if self.last_ns is None else max(self.last_ns, span.end_ns)
        attributes = span.attributes
        self.slowest.add(span)
        stage = attributes.get(semconv.ATTR_STAGE)
        if stage is not None:
            name = str(stage)
            self.stage_counts[name] = self.stage_counts.get(name, 0) + 1
            self._sample(self.stages, name).add((start, seconds))
        if span.name != semconv.SPAN_SYNTHESIZE:
            return
        self.requests += 1
        if attributes.get(semconv.ATTR_OUTCOME) == semconv.OUTCOME_ERROR:
            self.errors += 1
        configuration = _configuration(attributes)
        if configuration not in self.configurations:
            # Bounded series: configurations past the first few share one.
            if len(self.configurations) < MAX_CONFIGURATIONS:
                self.configurations.add(configuration)
            else:
                configuration = OTHER
        self._sample(self.latency, configuration).add((start, seconds))
        audio = _number(attributes.get(semconv.ATTR_AUDIO_DURATION))
        memory = _number(attributes.get(semconv.ATTR_GPU_MEMORY_PEAK))
        if audio is not None and memory is not None:
            self._sample(self.memory, configuration).add((audio, memory / _MIB))
        length_bin = attributes.get(semconv.ATTR_TEXT_LENGTH_BIN)
        if length_bin is not None:
            self._sample(self.by_length, (str(length_bin), configuration)).add(seconds)


def _when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def _trend(points: Sequence[tuple[int, float]]) -> tuple[list[datetime], list[float]]:
    """Median latency per time bucket over the sample (``TREND_BUCKETS`` buckets)."""
    start = min(t for t, _ in points)
    width = max(1, (max(t for t, _ in points) - start) // TREND_BUCKETS + 1)
    buckets: dict[int, list[float]] = {}
    for t, seconds in points:
        buckets.setdefault((t - start) // width, []).append(seconds)
    times = [_when(start + index * width + width // 2) for index in sorted(buckets)]
    return times, [statistics.median(buckets[index]) * 1000 for index in sorted(buckets)]


_LAYOUT: Final[dict[str, Any]] = {
    "template": "plotly_white",
    "height": 440,
    "margin": {"l": 70, "r": 30, "t": 50, "b": 60},
    "legend": {"orientation": "h", "y": -0.18},
}


def _over_time(go: Any, title: str, series: Mapping[str, _Sample[tuple[int, float]]]) -> Any:
    """Sampled points, faint, and the median per time bucket as a line, one colour per series."""
    figure = go.Figure()
    palette = _palette(len(series))
    for (name, sample), colour in zip(sorted(series.items()), palette, strict=True):
        ordered = sorted(sample.items)
        figure.add_trace(go.Scatter(
            x=[_when(t) for t, _ in ordered], y=[s * 1000 for _, s in ordered], mode="markers",
            name=f"{name} (sample)", legendgroup=name, showlegend=False,
            marker={"size": 4, "opacity": 0.3, "color": colour},
        ))  # fmt: skip
        times, medians = _trend(ordered)
        figure.add_trace(
            go.Scatter(
                x=times, y=medians, mode="lines+markers", name=name, legendgroup=name,
                line={"color": colour, "width": 2},
            )
        )  # fmt: skip
    figure.update_layout(title=title, yaxis_title="latency (ms)", xaxis_title="time (UTC)",
                         **_LAYOUT)  # fmt: skip
    return figure


def _palette(count: int) -> list[str]:
    colours = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
        "#17becf", "#bcbd22", "#7f7f7f",
    ]  # fmt: skip
    return [colours[index % len(colours)] for index in range(count)]


def _memory_chart(go: Any, data: _Aggregate) -> Any:
    figure = go.Figure()
    for (name, sample), colour in zip(
        sorted(data.memory.items()), _palette(len(data.memory)), strict=True
    ):
        figure.add_trace(go.Scatter(
            x=[audio for audio, _ in sample.items], y=[mib for _, mib in sample.items],
            mode="markers", name=name, marker={"size": 6, "opacity": 0.7, "color": colour},
        ))  # fmt: skip
    figure.update_layout(title="Peak GPU memory against audio duration",
                         xaxis_title="audio duration (s)", yaxis_title="peak GPU memory (MiB)",
                         **_LAYOUT)  # fmt: skip
    return figure


_BIN_ORDER: Final = (semconv.LENGTH_BIN_SHORT, semconv.LENGTH_BIN_MEDIUM, semconv.LENGTH_BIN_LONG)


def _length_chart(go: Any, data: _Aggregate) -> Any:
    figure = go.Figure()
    configurations = sorted({configuration for _, configuration in data.by_length})
    for configuration, colour in zip(configurations, _palette(len(configurations)), strict=True):
        xs: list[str] = []
        ys: list[float] = []
        for (length_bin, name), sample in sorted(data.by_length.items()):
            if name == configuration:
                xs += [length_bin] * len(sample.items)
                ys += [seconds * 1000 for seconds in sample.items]
        figure.add_trace(go.Box(x=xs, y=ys, name=configuration, marker={"color": colour},
                                boxpoints=False))  # fmt: skip
    bins = {length_bin for length_bin, _ in data.by_length}
    order = [b for b in _BIN_ORDER if b in bins] + sorted(bins - set(_BIN_ORDER))
    figure.update_layout(title="Latency by text length bin", yaxis_title="latency (ms)",
                         xaxis_title="text length bin", boxmode="group", **_LAYOUT)  # fmt: skip
    figure.update_xaxes(categoryorder="array", categoryarray=order)
    return figure


_ROOT_COLOUR: Final = "#7f7f7f"
_ERROR_COLOUR: Final = "#d62728"


def _stage_colour(stage: str) -> str:
    """The same colour for a stage in every waterfall; nested stages share their parent's."""
    top = stage.split(".")[0]
    known = list(semconv.TOP_LEVEL_STAGES)
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    index = known.index(top) if top in known else len(known) + sum(map(ord, top)) % 2
    return palette[index]


def _waterfall(go: Any, spans: Sequence[SpanRecord]) -> Any:
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
        gpu = _number(attributes.get(semconv.ATTR_STAGE_GPU_DURATION))
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
    figure = go.Figure(go.Bar(
        y=rows, x=[(s.end_ns - s.start_ns) / 1e6 for s in ordered],
        base=[(s.start_ns - t0) / 1e6 for s in ordered], orientation="h",
        marker={"color": colours}, hovertext=hovers, hoverinfo="text",
        text=[f"{(s.end_ns - s.start_ns) / 1e6:.0f} ms" for s in ordered],
        textposition="auto",
    ))  # fmt: skip
    configuration = html.escape(_configuration(root.attributes))
    figure.update_layout(
        title=f"{(root.end_ns - root.start_ns) / 1e6:.0f} ms \u2014 trace {root.trace_id}"
        f" \u2014 {configuration} \u2014 {_when(root.start_ns):%Y-%m-%d %H:%M:%S} UTC",
        template="plotly_white", height=max(220, 60 + 22 * len(ordered)),
        margin={"l": 260, "r": 30, "t": 50, "b": 40}, xaxis_title="ms since the request began",
        showlegend=False, title_font_size=13,  # a long title, clear of the toolbar
    )  # fmt: skip
    figure.update_yaxes(tickvals=rows, ticktext=labels, autorange="reversed")
    return figure


_COMPARISON_COLUMNS: Final = ("stage", "metric", "a", "b", "diff", "low", "high", "verdict")


def _comparison_chart(go: Any, subplots: Any, rows: Sequence[Mapping[str, object]]) -> Any:
    """Each difference B - A with its 95% interval; a zero line to read the verdict against."""
    metrics = list(dict.fromkeys(str(row["metric"]) for row in rows))
    figure = subplots.make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    for column, metric in enumerate(metrics, start=1):
        chosen = [row for row in rows if str(row["metric"]) == metric]
        scale = 1.0 if metric == "rtf" else 1000.0  # latencies in ms, the RTF as it is
        diff, low, high = ([_float(row[key]) * scale for row in chosen] for key in _INTERVAL)
        figure.add_trace(
            go.Scatter(
                x=diff, y=[str(row["stage"]) for row in chosen], mode="markers", name=metric,
                marker={"size": 10, "color": "#1f77b4"}, showlegend=False,
                error_x={
                    "type": "data", "symmetric": False,
                    "array": [h - d for h, d in zip(high, diff, strict=True)],
                    "arrayminus": [d - lo for lo, d in zip(low, diff, strict=True)],
                },
            ),
            row=1, col=column,
        )  # fmt: skip
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


_INTERVAL: Final = ("diff", "low", "high")


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float | str) else math.nan


def _comparison_table(rows: Sequence[Mapping[str, object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{name}</th>" for name in _COMPARISON_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(name, ''))}</td>" for name in _COMPARISON_COLUMNS)
        + "</tr>"
        for row in rows
    )  # fmt: skip
    return f'<table class="comparison"><tr>{head}</tr>{body}</table>'


def _stage_table(data: _Aggregate) -> str:
    order: list[str] = [s for s in semconv.TOP_LEVEL_STAGES if s in data.stages]
    order += sorted(set(data.stages) - set(order))
    rows = []
    for stage in order:
        seconds = [s for _, s in data.stages[stage].items]
        rows.append(
            f"<tr><td>{html.escape(stage)}</td><td>{data.stage_counts[stage]}</td>"
            f"<td>{_quantile(seconds, 0.5) * 1000:.1f}</td>"
            f"<td>{_quantile(seconds, 0.95) * 1000:.1f}</td></tr>"
        )
    return (
        "<table><tr><th>stage</th><th>spans</th><th>p50 (ms)</th><th>p95 (ms)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1350px; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.9em; }
"""


def write_html(
    path: pathlib.Path,
    spans: Iterable[SpanRecord],
    *,
    comparison: Sequence[Mapping[str, object]] = (),
    title: str = "tts-otel report",
) -> None:
    """Write the report to ``path``: one self-contained HTML file that needs no network.

    ``spans`` is read once, streaming (see the module's docstring for what is
    kept). ``comparison`` rows, when given, come from ``tts-otel compare``:
    keys ``stage`` (a stage or ``request``), ``metric`` (``p50``, ``p95`` or
    ``rtf``), ``a``, ``b``, ``diff``, ``low``, ``high`` (floats, seconds for
    latencies; ``low``/``high`` the 95% interval of ``diff``) and ``verdict``.
    Raises :class:`MissingExtraError` when plotly (the ``html`` extra) is missing.
    """
    go, subplots = _plotly()
    data = _Aggregate(SLOWEST)
    for span in spans:
        data.add(span)

    sections: list[tuple[str, str, Any]] = []  # (heading, text before the chart, figure or None)
    if data.latency:
        sections.append(("Latency over time by configuration", "",
                         _over_time(go, "Request latency over time by configuration",
                                    data.latency)))  # fmt: skip
    if data.memory:
        sections.append(("Peak GPU memory against audio duration", "", _memory_chart(go, data)))
    if data.by_length:
        sections.append(("Latency by text length bin", "", _length_chart(go, data)))
    if data.stages:
        sections.append(("Per-stage latency over time", _stage_table(data),
                         _over_time(go, "Stage latency over time (median per bucket)",
                                    data.stages)))  # fmt: skip
    for rank, trace in enumerate(data.slowest.slowest_first(), start=1):
        heading = "Slowest requests" if rank == 1 else ""
        sections.append((heading, "", _waterfall(go, trace)))
    if comparison:
        sections.append(("Comparison", _comparison_table(comparison),
                         _comparison_chart(go, subplots, comparison)))  # fmt: skip

    parts = []
    first_chart = True
    for heading, text, figure in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(text)
        if figure is not None:
            parts.append(figure.to_html(
                full_html=False, include_plotlyjs=first_chart,
                config={"displaylogo": False, "responsive": True},
            ))  # fmt: skip
            first_chart = False

    if data.first_ns is None or data.last_ns is None:
        summary = "No spans matched: nothing to draw."
    else:
        summary = (
            f"{data.spans:,} spans, {data.requests:,} requests ({data.errors:,} failed), "
            f"{_when(data.first_ns):%Y-%m-%d %H:%M:%S} to {_when(data.last_ns):%Y-%m-%d %H:%M:%S}"
            " UTC."
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{summary}</p>
<p class="note">Charts draw a uniform random sample of at most {SAMPLE_SIZE:,} points per
series; counts are exact. Lines are the median per time bucket.</p>
{"".join(parts)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
