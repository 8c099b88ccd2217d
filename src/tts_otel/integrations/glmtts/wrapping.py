"""How the contract's callables get wrapped: on import (post-import hooks), in ``__main__``
when glmtts_inference.py or the web UI runs as a script, in the modules that imported a
wrapped function by name before it was wrapped (``from glmtts_inference import
generate_long``); and unwrapped exactly. So the import order does not matter. What
cannot be found is named, with the fix."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from tts_otel.integrations.glmtts.contract import (
    CONTRACT,
    SCRIPT,
    WEB_UI,
    Wrapped,
    findable,
    main_module_name,
)
from tts_otel.integrations.glmtts.handlers import Handler

_log = logging.getLogger(__name__)


class Wrapping:
    """The wrappers of one ``instrument()``, each calling ``handler_of(entry)``; undone by
    :meth:`unwrap`. Hooks still waiting for an import after that do nothing."""

    def __init__(self, handler_of: Callable[[Wrapped], Handler]) -> None:
        self._handler_of = handler_of
        self._wrapped: list[tuple[ModuleType, Wrapped]] = []
        # (module, attribute, original): by-name copies of a wrapped function, rebound.
        self._aliases: list[tuple[ModuleType, str, object]] = []
        self._active = True
        self._lock = threading.Lock()
        modules = sorted({entry.module for entry in CONTRACT})
        missing = [name for name in modules if not findable(name)]
        self.expected = tuple(entry for entry in CONTRACT if entry.module not in missing)
        _report_missing(missing, everything=len(missing) == len(modules))
        self._watch_main = any(entry.module in (SCRIPT, WEB_UI) for entry in self.expected)
        for name in sorted({entry.module for entry in self.expected}):
            wrapt.register_post_import_hook(self._on_import, name)

    def _on_import(self, module: ModuleType) -> None:
        if self._active:
            for entry in self.expected:
                if entry.module == module.__name__:
                    self._wrap(module, entry)

    def _wrap(self, module: ModuleType, entry: Wrapped) -> None:
        try:
            wrapt.wrap_function_wrapper(module, entry.qualname, self._wrapper(entry))
        except AttributeError:
            _log.warning(
                "tts-otel: GLM-TTS has no %s.%s; not instrumented", module.__name__, entry.qualname
            )
            return
        self._wrapped.append((module, entry))
        if "." not in entry.qualname:
            self._rebind_copies(getattr(module, entry.qualname))

    def _rebind_copies(self, wrapper: Any) -> None:
        """Modules that imported the function by name before it was wrapped hold the
        original: point them at the wrapper (GLM-TTS's own modules and ``__main__``)."""
        original = wrapper.__wrapped__
        packages = {entry.module.split(".")[0] for entry in CONTRACT} | {"__main__"}
        for module in list(sys.modules.values()):
            try:
                if str(getattr(module, "__name__", "")).split(".")[0] not in packages:
                    continue
                for name, value in list(vars(module).items()):
                    if value is original:
                        setattr(module, name, wrapper)
                        self._aliases.append((module, name, original))
            except Exception:  # sys.modules may hold objects that are not modules
                _log.debug("tts-otel: could not look into %r", module, exc_info=True)

    def handler_for(self, function: object) -> Any:
        """The wrapped version of ``function`` if it is a wrapped web UI handler (a server
        registered it before it was wrapped), else ``None``."""
        for module, entry in self._wrapped:
            wrapper = getattr(module, entry.qualname, None)
            if entry.module == WEB_UI and getattr(wrapper, "__wrapped__", None) is function:
                return wrapper
        return None

    def wrap_main(self) -> None:
        """``python glmtts_inference.py`` and ``python -m tools.gradio_app`` run that file
        as ``__main__``: wrap it there, once its functions exist (the first wrapped call,
        or the web UI's launch, happens after they do)."""
        with self._lock:
            main = sys.modules.get("__main__")
            name = None if main is None else main_module_name(main)
            if not self._active or main is None or name is None:
                return
            self._watch_main = False
            for entry in self.expected:
                function = getattr(main, entry.qualname, None)
                wrapped = hasattr(function, "__wrapped__")
                if entry.module == name and callable(function) and not wrapped:
                    self._wrap(main, entry)

    def unwrap(self) -> None:
        self._active = False
        for module, entry in self._wrapped:
            owner: Any = module
            *path, attribute = entry.qualname.split(".")
            for name in path:
                owner = getattr(owner, name)
            unwrap(owner, attribute)
        for module, name, original in self._aliases:
            setattr(module, name, original)
        self._aliases.clear()
        self._wrapped.clear()

    def _wrapper(self, entry: Wrapped) -> Callable[..., Any]:
        handler = self._handler_of(entry)

        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            if not is_instrumentation_enabled():
                return wrapped(*args, **kwargs)
            if self._watch_main:
                self.wrap_main()
            return handler(entry, wrapped, instance, args, kwargs)

        return wrapper


def _report_missing(missing: list[str], *, everything: bool) -> None:
    if not missing:
        return
    # None found: GLM-TTS is not here (an unrelated app under opentelemetry-instrument,
    # which loads every instrumentor installed): nothing to warn about.
    (_log.debug if everything else _log.warning)(
        "tts-otel: GLM-TTS modules not found: %s; %s. Run from GLM-TTS's folder "
        "(the working directory of `python glmtts_inference.py`) or add that folder "
        "to PYTHONPATH",
        ", ".join(missing),
        "nothing is instrumented" if everything else "the rest is instrumented",
    )
