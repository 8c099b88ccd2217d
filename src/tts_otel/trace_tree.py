"""Requests as waterfalls of their spans (``tts-otel trace``); kept for its importers, the
drawing is :mod:`tts_otel.read.waterfall`."""

from __future__ import annotations

from collections.abc import Iterable

from tts_otel.read import waterfall
from tts_otel.read.assemble import requests
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import Selection


def render_trees(spans: Iterable[SpanRecord], last: int = 1) -> str:
    """The last ``last`` requests (by start time), each as a waterfall of its spans."""
    return waterfall.render(waterfall.latest(requests(spans, Selection(), ordered=False), last))
