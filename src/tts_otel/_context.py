"""Context variables shared by requests and stages (contextvars follow asyncio tasks)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tts_otel.request import Synthesis

current_request: ContextVar[Synthesis | None] = ContextVar("tts_otel_request", default=None)
current_segment: ContextVar[int | None] = ContextVar("tts_otel_segment", default=None)
