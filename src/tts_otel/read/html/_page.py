"""The page: the charts in order under their headings, the tables beside them, one HTML file."""

from __future__ import annotations

import html
import pathlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from tts_otel.read.assemble import Outside, Request
from tts_otel.read.html import _charts as charts
from tts_otel.read.html._aggregate import SAMPLE_SIZE, SLOWEST, Aggregate
from tts_otel.read.html._plotly import load as load_plotly
from tts_otel.read.summary import ordered_stages, stage_label

_COMPARISON_COLUMNS: Final = ("stage", "metric", "a", "b", "diff", "low", "high", "verdict")
_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1350px; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.9em; }
"""

# (heading, HTML before the chart, figure or None); an empty heading continues the section above.
_Section = tuple[str, str, Any]


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def _comparison_table(rows: Sequence[Mapping[str, object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{name}</th>" for name in _COMPARISON_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{cell(row.get(name, ''))}</td>" for name in _COMPARISON_COLUMNS)
        + "</tr>"
        for row in rows
    )
    return f'<table class="comparison"><tr>{head}</tr>{body}</table>'


def _stage_table(data: Aggregate) -> str:
    rows = []
    for stage in ordered_stages(data.stages):
        seconds = [s for _, s in data.stages[stage].items]
        label = html.escape(stage_label(stage)).replace(" ", "&nbsp;")
        rows.append(
            f"<tr><td>{label}</td><td>{data.stage_counts[stage]}</td>"
            f"<td>{_quantile(seconds, 0.5) * 1000:.1f}</td>"
            f"<td>{_quantile(seconds, 0.95) * 1000:.1f}</td></tr>"
        )
    return (
        "<table><tr><th>stage</th><th>spans</th><th>p50 (ms)</th><th>p95 (ms)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _sections(
    go: Any, subplots: Any, data: Aggregate, comparison: Sequence[Mapping[str, object]]
) -> list[_Section]:
    """The page's sections in order, leaving out any chart with nothing to draw."""
    sections: list[_Section] = []
    if data.latency:
        sections.append(
            (
                "Latency over time by configuration",
                "",
                charts.over_time(go, "Request latency over time by configuration", data.latency),
            )
        )
    if data.memory:
        sections.append(
            ("Peak GPU memory against audio duration", "", charts.memory_chart(go, data.memory))
        )
    if data.by_length:
        sections.append(("Latency by text length bin", "", charts.length_chart(go, data.by_length)))
    if data.stages:
        sections.append(
            (
                "Per-stage latency over time",
                _stage_table(data),
                charts.over_time(
                    go,
                    "Stage latency over time (median per bucket)",
                    {stage: data.stages[stage] for stage in ordered_stages(data.stages)},
                ),
            )
        )
    for rank, trace in enumerate(data.slowest.slowest_first(), start=1):
        heading = "Slowest requests" if rank == 1 else ""
        sections.append((heading, "", charts.waterfall(go, trace)))
    if comparison:
        sections.append(
            (
                "Comparison",
                _comparison_table(comparison),
                charts.comparison_chart(go, subplots, comparison),
            )
        )
    return sections


def _body(sections: Iterable[_Section]) -> str:
    """The sections as HTML; plotly's JavaScript goes in once, with the first chart."""
    parts = []
    first_chart = True
    for heading, text, figure in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(text)
        if figure is not None:
            parts.append(
                figure.to_html(
                    full_html=False,
                    include_plotlyjs=first_chart,
                    config={"displaylogo": False, "responsive": True},
                )
            )
            first_chart = False
    return "".join(parts)


def _summary(data: Aggregate, outside: Outside | None) -> str:
    note = f" {html.escape(outside.note())}." if outside is not None and outside.stage_spans else ""
    if data.first_ns is None or data.last_ns is None:
        return f"No requests matched: nothing to draw.{note}"
    first, last = charts.when(data.first_ns), charts.when(data.last_ns)
    return (
        f"{data.spans:,} spans, {data.requests:,} requests ({data.errors:,} failed), "
        f"{first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC.{note}"
    )


def write_html(
    path: pathlib.Path,
    requests: Iterable[Request],
    *,
    comparison: Sequence[Mapping[str, object]] = (),
    title: str = "tts-otel report",
    outside: Outside | None = None,
) -> None:
    """Write the report to ``path``: one self-contained HTML file that needs no network.

    ``requests`` (as :func:`tts_otel.read.assemble.requests` gives them) are read once,
    streaming (see :mod:`tts_otel.read.html._aggregate` for what is kept);
    ``outside``, counted while they are read, is said under the title.
    ``comparison`` rows, when given, come from ``tts-otel compare``:
    keys ``stage`` (a stage or ``request``), ``metric`` (``p50``, ``p95`` or
    ``rtf``), ``a``, ``b``, ``diff``, ``low``, ``high`` (floats, seconds for
    latencies; ``low``/``high`` the 95% interval of ``diff``) and ``verdict``.
    Raises :class:`MissingExtraError` when plotly (the ``html`` extra) is missing.
    """
    go, subplots = load_plotly()
    data = Aggregate(SLOWEST)
    for request in requests:
        data.add(request)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{_summary(data, outside)}</p>
<p class="note">Charts draw a uniform random sample of at most {SAMPLE_SIZE:,} points per
series; counts are exact. Lines are the median per time bucket.</p>
{_body(_sections(go, subplots, data, comparison))}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
