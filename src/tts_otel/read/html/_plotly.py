"""plotly, imported only when a report is drawn: it is an extra, and slow to import."""

from __future__ import annotations

import importlib
from typing import Any


class MissingExtraError(ImportError):
    """plotly is not installed; the message names the extra that brings it."""


def load() -> tuple[Any, Any]:
    """``(plotly.graph_objects, plotly.subplots)``, or :class:`MissingExtraError`."""
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
