"""GLM-TTS's web UI served by gradio: the click handler gradio registered, and the time a
click waited in gradio's queue.

Gradio keeps the handler object it was given when the UI was built, before any
wrapper could replace the module's attribute (``python -m tools.gradio_app`` builds
it in ``__main__``). So at ``Blocks.launch`` the registered handlers are swapped
for the instrumentor's wrappers. The queue wait is read where gradio's queue starts a
job (``Queue.process_events``, which runs the handler in a thread with a copy of its
context): the event's ``enqueue_time`` against the clock gradio set it by.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import wrapt
from opentelemetry.instrumentation.utils import unwrap

_log = logging.getLogger(__name__)

queue_wait: ContextVar[float | None] = ContextVar("tts_otel_gradio_queue_wait", default=None)


class Handlers(Protocol):
    def handler_for(self, function: object) -> Any: ...

    def wrap_main(self) -> None: ...


class GradioHooks:
    """Post-import hooks on gradio, undone by :meth:`remove`."""

    def __init__(self, handlers: Handlers) -> None:
        self._handlers = handlers
        self._active = True
        self._patched: list[tuple[Any, str]] = []
        self._swapped: list[tuple[Any, object]] = []  # (BlockFunction, original handler)
        wrapt.register_post_import_hook(self._on_blocks, "gradio.blocks")
        wrapt.register_post_import_hook(self._on_queueing, "gradio.queueing")

    def _on_blocks(self, module: Any) -> None:
        if self._active and hasattr(module, "Blocks"):
            wrapt.wrap_function_wrapper(module, "Blocks.launch", self._launch)
            self._patched.append((module.Blocks, "launch"))

    def _on_queueing(self, module: Any) -> None:
        if self._active and hasattr(module, "Queue"):
            wrapt.wrap_function_wrapper(module, "Queue.process_events", self._process_events)
            self._patched.append((module.Queue, "process_events"))

    def _launch(self, wrapped: Callable[..., Any], blocks: Any, args: Any, kwargs: Any) -> Any:
        try:
            self._handlers.wrap_main()
            for block_fn in list(getattr(blocks, "fns", {}).values()):
                wrapper = self._handlers.handler_for(getattr(block_fn, "fn", None))
                if wrapper is not None:
                    self._swapped.append((block_fn, block_fn.fn))
                    block_fn.fn = wrapper
        except Exception:
            _log.exception("tts-otel: could not instrument the gradio app's handlers")
        return wrapped(*args, **kwargs)

    async def _process_events(
        self, wrapped: Callable[..., Any], queue: Any, args: Any, kwargs: Any
    ) -> Any:
        token = None
        try:
            events = args[0] if args else kwargs.get("events")
            enqueued = getattr(events[0], "enqueue_time", None) if events else None
            if isinstance(enqueued, float):
                token = queue_wait.set(max(0.0, time.monotonic() - enqueued))
        except Exception:
            _log.debug("tts-otel: gradio's queue event has no enqueue time", exc_info=True)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            if token is not None:
                queue_wait.reset(token)

    def remove(self) -> None:
        self._active = False  # hooks still waiting for gradio's import do nothing
        for owner, name in self._patched:
            unwrap(owner, name)
        for block_fn, original in self._swapped:
            block_fn.fn = original
        self._patched.clear()
        self._swapped.clear()
