"""Per-stage latency summary of synthesis traces: the table ``tts-otel demo`` and
``tts-otel report`` print. Works on live SDK spans and on OTLP JSON files.

The implementation lives in :mod:`tts_otel.read`; these names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from tts_otel.read.assemble import facts, requests
from tts_otel.read.records import SpanRecord, from_otlp_json, from_sdk
from tts_otel.read.selection import Selection
from tts_otel.read.stats import percentile
from tts_otel.read.summary import Accumulator, StageRow, Summary, render

__all__ = [
    "SpanRecord",
    "StageRow",
    "Summary",
    "from_otlp_json",
    "from_sdk",
    "percentile",
    "render",
    "summarize",
]


def summarize(spans: Iterable[SpanRecord]) -> Summary:
    """Stage times are summed per request (segments repeat stages), then ranked."""
    group = Accumulator()
    for request in requests(spans, Selection(), ordered=False):
        group.add(facts(request))
    return group.summary()
