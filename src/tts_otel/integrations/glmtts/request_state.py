"""What the handlers of one GLM-TTS request share, and the adopted prologue replayed
as its stages."""

from __future__ import annotations

import threading
import weakref

from tts_otel import semconv
from tts_otel.integrations.glmtts import prologue as _prologue
from tts_otel.request import Synthesis
from tts_otel.stages import Stage

ATTR_CODE_FUNCTION = "code.function.name"


class RequestState:
    """What the handlers of one request share: the open group stage, segment, stream block."""

    def __init__(self, request: Synthesis) -> None:
        self.request = request
        self.group: Stage | None = None
        self.group_ended_at = 0.0
        self.segment: int | None = None
        self.block: int | None = None  # streaming: index of the block being rendered
        self.first_block_ready: float | None = None
        request.add_finalizer(self.close_group)

    def close_group(self, error: BaseException | None = None) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.end(error, at=self.group_ended_at)

    def child_of(self, group_name: str, at: float | None = None) -> Stage:
        if self.group is None or self.group.name != group_name:
            self.close_group()
            self.group = self.request.stage(group_name).start(current=False, at=at)
        return self.group


class States:
    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[Synthesis, RequestState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def of(self, request: Synthesis) -> RequestState:
        with self._lock:
            state = self._states.get(request)
            if state is None:
                state = self._states[request] = RequestState(request)
            return state


def count_tokens(request: Synthesis, stage: Stage, generated: int | None, seconds: float) -> None:
    if generated is None:
        return
    request.speech_tokens(generated)
    stage.set_attribute(semconv.ATTR_SPEECH_TOKENS, generated)
    if seconds > 0:
        stage.set_attribute(semconv.ATTR_TOKENS_PER_SECOND, generated / seconds)


def replay(state: RequestState, prologue: _prologue.Prologue | None) -> None:
    """The adopted work as stages of the request, at the times it ran, grouped as the
    handlers group work done inside a request."""
    if prologue is None:
        return
    for record in prologue.records:
        if record.group is None:
            state.close_group()
            parent = None
        else:
            parent = state.child_of(record.group, at=record.start)
        stage = state.request.stage(record.stage, parent=parent)
        stage.start(current=False, at=record.start)
        stage.set_attribute(ATTR_CODE_FUNCTION, record.function)
        count_tokens(state.request, stage, record.speech_tokens, record.end - record.start)
        stage.end(record.error, at=record.end)
        state.group_ended_at = record.end
        if record.error is not None:  # as a failure inside a request closes its group
            state.close_group(record.error)
    state.close_group()
