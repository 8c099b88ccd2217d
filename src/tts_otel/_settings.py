"""Settings declared once: each is a dataclass field whose metadata holds its
variable, parser, error fix and documentation.

One declaration drives the settings class, the environment lookup, the
validation and the README's tables (``scripts/settings_table.py``), so a new
setting cannot be added to one of them and forgotten in another.

The parsers here are shared by every group of settings, so a value means the
same everywhere. An empty value, from a variable or an argument, means unset
(the default): the OpenTelemetry specification asks SDKs to read an empty
variable as an unset one, and ``FOO= cmd`` is how shells clear a variable.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from tts_otel._validation import MAX_COUNT, describe, is_utf8
from tts_otel.errors import ConfigurationError

_log = logging.getLogger("tts_otel.config")

T = TypeVar("T")
S = TypeVar("S", bound=str)

_KEY: Final = "tts_otel.setting"


# NamedTuples, not dataclasses: a frozen dataclass costs about 1.5 ms to define (Python
# 3.11 compiles each generated method), a NamedTuple 0.2 ms, paid at configure() or the
# first request (measured on the 2-core reference machine).
class Row(NamedTuple):
    """One setting: where its value comes from, how it is checked, how it is documented."""

    name: str  # the field, and the keyword that overrides the variable
    variables: tuple[str, ...]  # read in order; the first set one wins
    parse: Callable[[object], Any]  # raises ValueError naming the problem
    default: Any
    fix: str  # what the error tells the user to do
    doc: str  # for the README: the values it takes, or what it means
    shown: str  # the default as the README shows it
    argument: str | None  # the configure() keyword that sets it; None: variable only

    def lookup(self, argument: object, env: Mapping[str, str]) -> tuple[str, object] | None:
        """``(who set it, raw value)``, or ``None`` when nothing did and the default holds."""
        if not _unset(argument):
            return f"{self.name} ({self.variables[0]})", argument
        for variable in self.variables:
            raw = env.get(variable)
            if not _unset(raw):
                return variable, raw
        return None

    def value(self, argument: object, env: Mapping[str, str], lenient: bool) -> Any:
        """Argument, else variable, else default. ``lenient``: a bad *variable* falls back
        to the default with one warning, because without configure() the first place
        settings are read is a request, and a request must never fail for telemetry."""
        found = self.lookup(argument, env)
        if found is None:
            return self.default
        who, raw = found
        try:
            return self.parse(raw)
        except ValueError as error:
            problem = ConfigurationError(who, str(error), self.fix)
        if not lenient or who not in self.variables:
            raise problem from None
        _warn_once(problem, str(raw), self.shown)
        return self.default


class _Declared(NamedTuple):
    variables: tuple[str, ...]
    parse: Callable[[object], Any]
    fix: str
    doc: str
    shown: str | None
    argument: str | bool


def setting(
    default: T,
    variable: str | tuple[str, ...],
    parse: Callable[[object], T],
    fix: str = "",
    *,
    doc: str = "",
    shown: str | None = None,
    argument: str | bool = True,
    repr: bool = True,
) -> T:
    """A settings-class field. ``argument``: True, the field's name is the configure()
    keyword; a string, that keyword; False, the variable alone sets it."""
    variables = (variable,) if isinstance(variable, str) else variable
    declared = _Declared(variables, parse, fix, doc, shown, argument)
    field: T = dataclasses.field(default=default, repr=repr, metadata={_KEY: declared})
    return field


def rows(cls: type[object]) -> tuple[Row, ...]:
    """The table a settings class declares, in field order."""
    found = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        declared: _Declared = field.metadata[_KEY]
        argument = declared.argument
        found.append(
            Row(
                name=field.name,
                variables=declared.variables,
                parse=declared.parse,
                default=field.default,
                fix=declared.fix,
                doc=declared.doc,
                shown=_shown(field.default) if declared.shown is None else declared.shown,
                argument=field.name if argument is True else argument or None,
            )
        )
    return tuple(found)


def resolve(
    cls: type[object], arguments: Mapping[str, object], env: Mapping[str, str], lenient: bool
) -> dict[str, Any]:
    """Every field of ``cls``: its argument, else its variable, else its default."""
    table = rows(cls)
    unknown = set(arguments) - {row.name for row in table}
    if unknown:
        raise TypeError(f"{cls.__name__} has no setting {', '.join(sorted(unknown))}")
    return {row.name: row.value(arguments.get(row.name), env, lenient) for row in table}


def _unset(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw)


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if default is None or default == "" or default == ():
        return ""
    return f"`{default}`"


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(error: ConfigurationError, raw: str, default: str) -> None:
    """One WARNING per bad variable and value: the service may build handles repeatedly."""
    with _warned_lock:
        if (error.setting, raw) in _warned:
            return
        _warned.add((error.setting, raw))
    _log.warning("tts-otel: %s. Using the default %s until it is fixed.", error, default)


# --- the shared parsers: each takes an argument or a variable's text ---------------------


def text(raw: object) -> str:
    """Any text that is valid UTF-8; the error does not repeat the value (a password)."""
    value = str(raw)
    if not is_utf8(value):
        raise ValueError("is not valid UTF-8 text")
    return value


def path(raw: object) -> Path:
    return Path(text(raw))


def directory(raw: object) -> Path | None:
    """A folder that may not exist yet, but not a file (a spool's)."""
    folder = Path(text(raw))
    try:
        usable = not folder.exists() or folder.is_dir()
    except OSError as error:  # a name too long for the file system, say
        raise ValueError(
            f"{describe(str(folder))} cannot be a directory ({error.strerror})"
        ) from None
    if not usable:
        raise ValueError(f"{describe(str(folder))} is not a directory")
    return folder


def positive_number(raw: object) -> float:
    """A finite number above 0: NaN slipped through ``<= 0`` and became a timeout per export."""
    try:
        value = float(raw if isinstance(raw, int | float) else str(raw).strip())
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if isinstance(raw, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{describe(raw)} is not a finite positive number")
    return value


def positive_int(raw: object) -> int:
    """A whole number above 0; ``1e6`` is one, ``0.4`` is not (it used to become 0)."""
    try:
        value = int(raw) if isinstance(raw, int) else int(str(raw).strip())
    except ValueError:
        number = positive_number(raw)
        if not number.is_integer():
            raise ValueError(f"{describe(raw)} is not a whole number") from None
        value = int(number)
    if isinstance(raw, bool) or value <= 0:
        raise ValueError(f"{describe(raw)} is not a positive integer")
    return value


def _whole(raw: object, low: int, high: int, what: str) -> int:
    """An integer from ``low`` to ``high`` (a bool is none), else ValueError naming ``what``."""
    try:
        value = int(raw) if isinstance(raw, int) else int(str(raw).strip())
    except ValueError:
        value = low - 1
    if isinstance(raw, bool) or not low <= value <= high:
        raise ValueError(f"{describe(raw)} is not {what}")
    return value


def non_negative_int(raw: object) -> int:
    """A whole number of 0 or more, as the SDK's limits take them."""
    return _whole(raw, 0, MAX_COUNT, "a whole number of 0 or more")


def port(raw: object) -> int:
    return _whole(raw, 0, 65535, "a TCP port")


# The longest DNS name; a longer "host" failed in the IDNA codec as a bare UnicodeError.
_MAX_HOST_CHARS = 253


def host(raw: object) -> str:
    address = text(raw).strip()
    if not address:
        raise ValueError("the address is empty")
    if len(address) > _MAX_HOST_CHARS:
        raise ValueError(f"{describe(address)} is longer than a host name can be")
    return address


def choice(*options: S) -> Callable[[object], S]:
    """One of ``options``, in any case."""

    def parse(raw: object) -> S:
        value = str(raw).strip().lower()
        for option in options:
            if value == option:
                return option
        raise ValueError(f"{describe(raw)} is not one of {', '.join(options)}")

    return parse


def names(raw: object) -> tuple[str, ...]:
    """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``."""
    if isinstance(raw, str):
        parts: Iterable[object] = raw.split(",")
    elif isinstance(raw, Iterable):
        parts = raw
    else:
        raise ValueError(f"{describe(raw)} is not a list of names")
    return tuple(text(part).strip() for part in parts if text(part).strip())


def file_mode(raw: object) -> int:
    """Permission bits in octal (``600``, ``0640``, ``0o640``, or an int such as ``0o640``);
    the owner keeps read and write, which the writer needs to reopen its files."""
    if isinstance(raw, bool):
        raise ValueError(f"{describe(raw)} is not a file mode")
    try:
        value = raw if isinstance(raw, int) else int(str(raw).strip().removeprefix("0o"), 8)
    except ValueError:
        raise ValueError(f"{str(raw)[:20]!r} is not an octal file mode") from None
    if not 0 <= value <= 0o777:
        raise ValueError(f"{value:o} is not a file mode (000 to 777)")
    if value & 0o600 != 0o600:
        raise ValueError(f"{value:03o} takes the owner's read or write away")
    return value
