"""How the contract's callables get wrapped: on import (post-import hooks, so the import
order does not matter), in ``__main__`` when glmtts_inference.py runs as a script,
and unwrapped exactly; what cannot be found is named, with the fix."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from tts_otel.integrations.glmtts.contract import (
    CONTRACT,
    SCRIPT,
    Wrapped,
    findable,
    is_glmtts_script,
)

_log = logging.getLogger(__name__)


class ContractWrapping(BaseInstrumentor):  # type: ignore[misc]
    """Wraps each :data:`CONTRACT` entry with the handler method it names.

    BaseInstrumentor is a singleton whose __init__ runs on every
    instantiation: state is set when instrumenting, not there.
    """

    _wrapped: list[tuple[ModuleType, Wrapped]]
    _expected: tuple[Wrapped, ...] = ()
    _is_instrumented_by_opentelemetry: bool
    _generation = 0
    _watch_main = False
    _lock = threading.Lock()

    def instrument(self, **kwargs: Any) -> Any:
        result = super().instrument(**kwargs)
        if self._is_instrumented_by_opentelemetry and not self._expected:
            self._is_instrumented_by_opentelemetry = False  # nothing was found to wrap
        return result

    def _warn_missing(self, missing: list[str]) -> None:
        if not missing:
            return
        _log.warning(
            "tts-otel: GLM-TTS modules not found: %s; %s. Run from GLM-TTS's folder "
            "(the working directory of `python glmtts_inference.py`) or add that folder "
            "to PYTHONPATH",
            ", ".join(missing),
            "nothing is instrumented" if len(missing) == len({e.module for e in CONTRACT})
            else "the rest is instrumented",
        )  # fmt: skip

    def _on_import(self, generation: int) -> Callable[[ModuleType], None]:
        def wrap(module: ModuleType) -> None:
            # A hook registered by an earlier instrument() must not wrap again.
            if generation != self._generation:
                return
            for entry in self._expected:
                if entry.module == module.__name__:
                    self._wrap(module, entry)

        return wrap

    def _wrap(self, module: ModuleType, entry: Wrapped) -> None:
        try:
            wrapt.wrap_function_wrapper(module, entry.qualname, self._wrapper(entry))
        except AttributeError:
            _log.warning("tts-otel: GLM-TTS has no %s.%s; not instrumented",
                         module.__name__, entry.qualname)  # fmt: skip
            return
        self._wrapped.append((module, entry))

    def _wrap_main(self) -> None:
        """``python glmtts_inference.py`` runs that file as ``__main__``: wrap it there,
        once its functions exist (the first wrapped call happens after they do)."""
        with self._lock:
            main = sys.modules.get("__main__")
            is_script = None if main is None else is_glmtts_script(main)
            if main is None or is_script is None:
                return
            self._watch_main = False
            function = getattr(main, "generate_long", None)
            if is_script and callable(function) and not hasattr(function, "__wrapped__"):
                entry = next(e for e in CONTRACT if e.module == SCRIPT)
                self._wrap(main, entry)

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, entry in self._wrapped:
            owner: Any = module
            *path, attribute = entry.qualname.split(".")
            for name in path:
                owner = getattr(owner, name)
            unwrap(owner, attribute)
        self._wrapped.clear()
        self._watch_main = False
        self._generation += 1  # hooks still waiting for an import now do nothing

    def _wrapper(self, entry: Wrapped) -> Callable[..., Any]:
        handler: Callable[..., Any] = getattr(self, entry.handler)

        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            if not is_instrumentation_enabled():
                return wrapped(*args, **kwargs)
            if self._watch_main:
                self._wrap_main()
            return handler(entry, wrapped, instance, args, kwargs)

        return wrapper

    def _wrap_contract(self) -> None:
        """Wrap every findable module of the contract when it is imported (now, if it is)."""
        self._wrapped = []
        self._generation += 1
        modules = sorted({entry.module for entry in CONTRACT})
        missing = [name for name in modules if not findable(name)]
        self._expected = tuple(entry for entry in CONTRACT if entry.module not in missing)
        self._warn_missing(missing)
        self._watch_main = any(entry.module == SCRIPT for entry in self._expected)
        for name in sorted({entry.module for entry in self._expected}):
            wrapt.register_post_import_hook(self._on_import(self._generation), name)
