"""What a stage needs from whatever owns it, and the context variables saying who that is.

Stages depend on this interface, not on the request: a request implements it
privately, and stages run outside any request have a detached owner
(``stages._Detached``). Context variables follow threads' and asyncio tasks'
own contexts.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from tts_otel.gpu.cuda import GpuInterval, RequestGpu
    from tts_otel.telemetry import Telemetry


class StageOwner(Protocol):
    """The request a stage belongs to, as far as the stage is concerned."""

    @property
    def telemetry(self) -> Telemetry: ...

    @property
    def context(self) -> Context:
        """The parent of stages started where the owner is not current (another thread)."""
        ...

    @property
    def gpu(self) -> RequestGpu | None: ...

    @property
    def error_details(self) -> bool:
        """Whether a failure's message and stack trace are recorded (they may quote the text)."""
        ...

    def span_attributes(self, stage: str) -> Mapping[str, AttributeValue]: ...

    def metric_attributes(
        self, stage: str, failure: str | None
    ) -> Mapping[str, AttributeValue]: ...

    def wall_ns(self, at: float) -> int:
        """A ``perf_counter()`` reading as epoch nanoseconds, on the owner's clock pairing."""
        ...

    def finished(
        self,
        span: Span,
        context: Context,
        end_ns: int,
        duration: float,
        attributes: Mapping[str, AttributeValue],
        gpu: GpuInterval | None,
    ) -> None:
        """The stage ran: end its span (now or when the owner resolves its GPU time)
        and record its duration."""
        ...


current_owner: ContextVar[StageOwner | None] = ContextVar("tts_otel_stage_owner", default=None)
current_segment: ContextVar[int | None] = ContextVar("tts_otel_segment", default=None)
