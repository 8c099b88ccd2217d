"""Work that runs before a request is known: GLM-TTS's prompt work and, for streaming, its LLM.

GLM-TTS's entry points normalise the prompt and the text, tokenise the prompt
and extract the prompt's speech tokens, features and speaker embedding, and
only then call ``generate_long`` (or, streaming, run the LLM and then
``token2wav_stream``). From the user's view all of it is one request, but the
instrumentor learns of the request only at that last call. So this work is
remembered, not traced: timings in an immutable record per context, which
the request adopts when it starts (its span begins at the first record) and
which is forgotten if no request follows soon enough (a prompt cached at
start-up), so it never leaves a span open or a request half-built.

The records live in a context variable and are replaced, never changed in
place: a copied context (a gradio or Starlette worker, an asyncio task) sees
its parent's records but cannot add to another context's. Each record is
adopted once, whichever context takes it first: a prompt prepared once and used
by two requests in copied contexts is counted in the first, and the second
says it reused prepared work.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter

# Work further apart than this from the next piece, or from the request, is
# not part of it: GLM-TTS's own flows leave microseconds to milliseconds
# between the prompt work and generate_long; a prompt prepared at start-up
# and used minutes later must not stretch the first request.
ADOPTION_GAP_S = 1.0
# Bounds the memory one context can hold if a service never starts a request.
MAX_RECORDS = 64


@dataclass(frozen=True, eq=False)  # adopted once: told apart by identity
class Record:
    """One wrapped call that ran outside any request."""

    stage: str
    group: str | None  # the parent stage it belongs under (speaker_embedding, acoustic)
    function: str
    start: float  # perf_counter readings
    end: float
    error: BaseException | None = None
    speech_tokens: int | None = None


@dataclass(frozen=True)
class Prologue:
    records: tuple[Record, ...] = ()
    # (input, output) of text_normalize and (token tensor, text) of tokenising:
    # they tell which normalised text the LLM was given, hence the input's length.
    normalized: tuple[tuple[str, str], ...] = ()
    tokenized: tuple[tuple[object, str], ...] = ()
    llm_text: str | None = None
    llm_prompt: str | None = None
    last: float = 0.0
    reused: bool = False  # some of this work was adopted by an earlier request

    @property
    def start(self) -> float | None:
        return min(record.start for record in self.records) if self.records else None

    def source_text(self, normalized: str | None) -> str | None:
        """The text whose normalisation gave ``normalized``, if this prologue saw it."""
        for raw, result in reversed(self.normalized):
            if normalized is not None and result.strip() == normalized.strip():
                return raw
        return None

    def text_of(self, tokens: object) -> str | None:
        for tensor, text in reversed(self.tokenized):
            if tensor is tokens:
                return text
        return None


_current: ContextVar[Prologue | None] = ContextVar("tts_otel_glmtts_prologue", default=None)
# Records some request adopted, across all contexts (records are compared by identity).
_adopted: weakref.WeakSet[Record] = weakref.WeakSet()
_adopted_lock = threading.Lock()


def _fresh(now: float) -> Prologue:
    current = _current.get()
    if current is None or now - current.last > ADOPTION_GAP_S:
        return Prologue(last=now)
    return current


def add(record: Record) -> None:
    current = _fresh(record.start)
    records = (*current.records, record)[-MAX_RECORDS:]
    _current.set(dataclasses.replace(current, records=records, last=record.end))


def normalized(raw: str, result: str, now: float) -> None:
    current = _fresh(now)
    pairs = (*current.normalized, (raw, result))[-MAX_RECORDS:]
    _current.set(dataclasses.replace(current, normalized=pairs, last=now))


def tokenized(tokens: object, text: str, now: float) -> None:
    current = _fresh(now)
    pairs = (*current.tokenized, (tokens, text))[-MAX_RECORDS:]
    _current.set(dataclasses.replace(current, tokenized=pairs, last=now))


def llm_inputs(text: object, prompt: object) -> None:
    """Remember which texts the LLM (run before a streaming request) was given."""
    current = _current.get()
    if current is not None:
        _current.set(
            dataclasses.replace(
                current, llm_text=current.text_of(text), llm_prompt=current.text_of(prompt)
            )
        )


def take() -> Prologue | None:
    """The work this context did just before now, for a request starting now, without what
    another request adopted already; then forgets it."""
    current = _current.get()
    if current is None:
        return None
    _current.set(None)
    if perf_counter() - current.last > ADOPTION_GAP_S or not current.records:
        return None
    with _adopted_lock:
        fresh = tuple(record for record in current.records if record not in _adopted)
        _adopted.update(fresh)
    return dataclasses.replace(current, records=fresh, reused=len(fresh) < len(current.records))


def failed(record: Record) -> Prologue:
    """The work done so far and the call that failed (``record``): a request that failed
    before the call that would have started it. Forgotten, so the next request does not
    adopt it."""
    add(record)
    return take() or Prologue(records=(record,), last=record.end)
