"""Settings of the direct InfluxDB exporter, checked once at start.

Every value the exporter would trip over later (a port that is not a number,
a timeout of NaN, a spool directory that is a file) is refused here with a
:class:`~tts_otel.errors.ConfigurationError` naming the variable and the fix:
accepted, it became a traceback on every export and all telemetry lost.
Credentials written into the URL are taken out of it, so the URL can be
printed anywhere.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from tts_otel import semconv
from tts_otel._settings import (
    choice,
    directory,
    names,
    positive_int,
    positive_number,
    resolve,
    rows,
    setting,
    text,
)
from tts_otel._validation import flag, is_utf8
from tts_otel.config import DEFAULT_SPOOL_BYTES as DEFAULT_SPOOL_BYTES  # users import it here
from tts_otel.errors import ConfigurationError

# service.name plus the bounded stage and configuration attributes: the tags
# dashboards group stage spans by. Outcome and error type stay in the JSON.
DEFAULT_SPAN_DIMENSIONS: Final = frozenset(
    {"service.name"}
    | (semconv.METRIC_ATTRIBUTE_KEYS - {semconv.ATTR_OUTCOME, semconv.ATTR_ERROR_TYPE})
)
PREFIX: Final = "TTS_OTEL_INFLUXDB_"


def _url(raw: object) -> str:
    """A URL urllib can send to: a space or a bad port used to fail on every export.

    Checked, and described in errors, without its credentials: urllib ends the host at
    the first ``/``, ``?`` or ``#``, so a password holding one unencoded was printed up
    to that character as a host or a port.
    """
    url = str(raw)
    if not is_utf8(url):  # said without the value: it may hold a password
        raise ValueError("is not valid UTF-8 text")
    bare = _split_credentials(url)[0]
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in bare):
        raise ValueError("contains a space or control character")
    try:
        parts = urllib.parse.urlsplit(bare)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as error:
        raise ValueError(f"is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL with a host")
    return url


def _dimensions(raw: object) -> frozenset[str]:
    return frozenset(names(raw))


@dataclass(frozen=True)
class InfluxSettings:
    """The exporter's settings, one row each, read from ``TTS_OTEL_INFLUXDB_<variable>``.
    ``setting()`` returns a ``dataclasses.field`` (RUF009 cannot see it)."""

    url: str = setting(
        "http://127.0.0.1:8086",
        f"{PREFIX}URL",
        _url,
        "use e.g. http://127.0.0.1:8086",
        doc="server (credentials in it are taken out: `http://user:password@host:8086`)",
    )
    api: Literal["v1", "v2"] = setting(
        "v1",
        f"{PREFIX}API",
        choice("v1", "v2"),
        "use v1 (InfluxDB 1.x /write) or v2 (/api/v2/write)",
        doc="`v1` (`/write`, Basic auth) or `v2` (`/api/v2/write`, Token)",
        shown="`v2` when `TOKEN` is set, else `v1`",
    )
    database: str = setting("tts", f"{PREFIX}DB", text, doc="v1 database")
    retention_policy: str = setting("", f"{PREFIX}RP", text, doc="v1 retention policy")
    username: str = setting("", f"{PREFIX}USERNAME", text, doc="v1 user")
    password: str = setting("", f"{PREFIX}PASSWORD", text, doc="v1 password", repr=False)
    org: str = setting("", f"{PREFIX}ORG", text, doc="v2 organization (required with v2)")
    bucket: str = setting("", f"{PREFIX}BUCKET", text, doc="v2 bucket (required with v2)")
    token: str = setting("", f"{PREFIX}TOKEN", text, doc="v2 token (required with v2)", repr=False)
    span_dimensions: frozenset[str] = setting(
        DEFAULT_SPAN_DIMENSIONS,
        f"{PREFIX}SPAN_DIMENSIONS",
        _dimensions,
        doc="span attributes written as tags (comma-separated)",
        shown="`service.name` + stage and configuration attributes",
    )
    gzip: bool = setting(True, f"{PREFIX}GZIP", flag, "use true or false", doc="compress requests")
    verify_tls: bool = setting(
        True, f"{PREFIX}VERIFY_TLS", flag, "use true or false", doc="verify the server's TLS"
    )
    timeout_s: float = setting(
        5.0,
        f"{PREFIX}TIMEOUT",
        positive_number,
        "use e.g. 10",
        doc="seconds per request",
        shown="`5`",
    )
    export_deadline_s: float = setting(
        10.0,
        f"{PREFIX}EXPORT_DEADLINE",
        positive_number,
        "use e.g. 10",
        doc="seconds per export, all retries",
        shown="`10`",
    )
    spool_dir: Path | None = setting(  # noqa: RUF009
        None,
        f"{PREFIX}SPOOL_DIR",
        directory,
        "name a directory (it is created if missing)",
        doc="disk spool, which survives a restart",
        shown="none: in memory",
    )
    spool_bytes: int = setting(
        DEFAULT_SPOOL_BYTES,
        f"{PREFIX}SPOOL_BYTES",
        positive_int,
        "use e.g. 67108864 (64 MiB)",
        doc="the spool's bound in bytes",
        shown="`67108864` (64 MiB)",
    )

    @property
    def target(self) -> str:
        """Where the data goes, for people (no credentials)."""
        if self.api == "v2":
            return f"{self.url} org={self.org} bucket={self.bucket}"
        return f"{self.url} db={self.database}"


# Keywords: the field names, or the variables' own names in lower case (`db`, `rp`).
_ALIASES: Final = {
    row.variables[0].removeprefix(PREFIX).lower(): row.name for row in rows(InfluxSettings)
}


def influx_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> InfluxSettings:
    """Settings from ``overrides``, else ``TTS_OTEL_INFLUXDB_*`` variables, else defaults
    (the table in :class:`InfluxSettings`; ``None`` or ``""`` means not given).

    Keywords: the field names of :class:`InfluxSettings` (``database``,
    ``timeout_s``...) or the variables' names in lower case (``db``, ``timeout``).
    Credentials in the URL (``http://user:password@host``) are used as the
    username and password, and taken out of the URL. ``API`` defaults to v2
    when a ``TOKEN`` is set.
    """
    env = os.environ if environ is None else environ
    given = {_ALIASES.get(key, key): value for key, value in overrides.items()}
    values = resolve(InfluxSettings, given, env, lenient=False)
    url, url_user, url_password = _split_credentials(values["url"])
    if (url_user or url_password) and (values["username"] or values["password"]):
        raise ConfigurationError(
            f"{PREFIX}URL",
            f"has credentials, and so has {PREFIX}USERNAME or PASSWORD",
            "give them in one place only",
        )
    values["url"] = url
    values["username"] = values["username"] or url_user
    values["password"] = values["password"] or url_password
    api_row = next(row for row in rows(InfluxSettings) if row.name == "api")
    if values["token"] and api_row.lookup(given.get("api"), env) is None:
        values["api"] = "v2"
    if values["api"] == "v2":
        for key in ("org", "bucket", "token"):
            if not values[key]:
                variable = f"{PREFIX}{key.upper()}"
                raise ConfigurationError(
                    variable, "is required with the v2 API", f"set {variable} or use API v1"
                )
    return InfluxSettings(**values)


def _split_credentials(url: str) -> tuple[str, str, str]:
    """``(url without credentials, username, password)``.

    Split by hand at the authority's last ``@``, not by urllib, which stops at a
    ``/``, ``?`` or ``#`` that an unencoded password may hold.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url.rstrip("/"), "", ""
    userinfo, _, host = rest.rpartition("@")
    username, _, password = userinfo.partition(":")
    without = f"{scheme}://{host}".rstrip("/")
    return without, urllib.parse.unquote(username), urllib.parse.unquote(password)
