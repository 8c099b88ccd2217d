"""Settings of the direct InfluxDB exporter, checked once at start.

Every value the exporter would trip over later (a port that is not a number,
a timeout of NaN, a spool directory that is a file) is refused here with a
:class:`~tts_otel.errors.ConfigurationError` naming the variable and the fix:
accepted, it became a traceback on every export and all telemetry lost.
Credentials written into the URL are taken out of it, so the URL can be
printed anywhere.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from tts_otel import semconv
from tts_otel.errors import ConfigurationError

# service.name plus the bounded stage and configuration attributes: the tags
# dashboards group stage spans by. Outcome and error type stay in the JSON.
DEFAULT_SPAN_DIMENSIONS: Final = frozenset(
    {"service.name"}
    | (semconv.METRIC_ATTRIBUTE_KEYS - {semconv.ATTR_OUTCOME, semconv.ATTR_ERROR_TYPE})
)
DEFAULT_SPOOL_BYTES: Final = 64 * 1024 * 1024
PREFIX: Final = "TTS_OTEL_INFLUXDB_"


@dataclass(frozen=True)
class InfluxSettings:
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "tts"
    retention_policy: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    org: str = ""
    bucket: str = ""
    token: str = field(default="", repr=False)
    span_dimensions: frozenset[str] = DEFAULT_SPAN_DIMENSIONS
    gzip: bool = True
    verify_tls: bool = True
    timeout_s: float = 5.0
    export_deadline_s: float = 10.0
    spool_dir: Path | None = None
    spool_bytes: int = DEFAULT_SPOOL_BYTES

    @property
    def target(self) -> str:
        """Where the data goes, for people (no credentials)."""
        if self.api == "v2":
            return f"{self.url} org={self.org} bucket={self.bucket}"
        return f"{self.url} db={self.database}"


# Keyword -> variable suffix. ``db`` and ``rp`` are the variables' own short names.
_KEYWORDS: Final = {
    "url": "URL", "api": "API", "database": "DB", "db": "DB", "retention_policy": "RP",
    "rp": "RP", "username": "USERNAME", "password": "PASSWORD", "org": "ORG",
    "bucket": "BUCKET", "token": "TOKEN", "span_dimensions": "SPAN_DIMENSIONS", "gzip": "GZIP",
    "verify_tls": "VERIFY_TLS", "timeout_s": "TIMEOUT", "export_deadline_s": "EXPORT_DEADLINE",
    "spool_dir": "SPOOL_DIR", "spool_bytes": "SPOOL_BYTES",
}  # fmt: skip


def _flag(name: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(name, f"{raw!r} is not a boolean", "use true or false")


def _positive(name: str, raw: object) -> float:
    """A finite number above 0: NaN slipped through ``<= 0`` and became a timeout per export."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(name, f"{raw!r} is not a finite positive number", "use e.g. 10")
    return value


def _byte_count(name: str, raw: object) -> int:
    """A whole number of bytes, at least 1: ``0.4`` used to become a bound of 0."""
    value = _positive(name, raw)
    if not value.is_integer():
        raise ConfigurationError(name, f"{raw!r} is not a whole number of bytes",
                                 "use e.g. 67108864 (64 MiB)")  # fmt: skip
    return int(value)


def _spool_dir(raw: object) -> Path | None:
    if raw is None or raw == "":
        return None
    path = Path(str(raw))
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"{PREFIX}SPOOL_DIR", f"{str(path)!r} is not a directory",
                                 "name a directory (it is created if missing)")  # fmt: skip
    return path


def _split_url(raw: str) -> tuple[str, str, str]:
    """``(url without credentials, username, password)``; refuses what urllib cannot send."""
    name = f"{PREFIX}URL"
    fix = "use e.g. http://127.0.0.1:8086"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ConfigurationError(name, "contains a space or control character", fix)
    try:
        parts = urllib.parse.urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as error:
        raise ConfigurationError(name, f"is not a valid URL ({error})", fix) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(name, "is not an http(s) URL with a host", fix)
    host = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/")
    username = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    return url, username, password


def influx_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> InfluxSettings:
    """Settings from ``overrides``, else ``TTS_OTEL_INFLUXDB_*`` variables, else defaults.

    Variables: URL, API (v1 or v2; v2 when a TOKEN is set), DB, RP, USERNAME,
    PASSWORD, ORG, BUCKET, TOKEN, SPAN_DIMENSIONS (comma-separated), GZIP,
    VERIFY_TLS, TIMEOUT (s), EXPORT_DEADLINE (s), SPOOL_DIR, SPOOL_BYTES.
    Keywords: the variables' names in lower case, or the field names of
    :class:`InfluxSettings` (``database``, ``retention_policy``, ``timeout_s``...).
    Credentials in the URL (``http://user:password@host``) are used as the
    username and password, and taken out of the URL.
    """
    env = os.environ if environ is None else environ
    unknown = set(overrides) - set(_KEYWORDS)
    if unknown:
        raise TypeError(f"influx_settings() got unknown keywords: {', '.join(sorted(unknown))}")
    given = {_KEYWORDS[key]: value for key, value in overrides.items()}

    def get(key: str, default: Any = "") -> Any:
        return given.get(key, env.get(PREFIX + key, default))

    url, url_user, url_password = _split_url(str(get("URL", InfluxSettings.url)))
    username, password = str(get("USERNAME")), str(get("PASSWORD"))
    if (url_user or url_password) and (username or password):
        raise ConfigurationError(f"{PREFIX}URL", f"has credentials, and so has {PREFIX}USERNAME "
                                 "or PASSWORD", "give them in one place only")  # fmt: skip
    token = str(get("TOKEN"))
    api = str(get("API", "v2" if token else "v1")).lower()
    if api not in ("v1", "v2"):
        raise ConfigurationError(f"{PREFIX}API", f"{api!r} is not an API version",
                                 "use v1 (InfluxDB 1.x /write) or v2 (/api/v2/write)")  # fmt: skip
    if api == "v2":
        for key in ("ORG", "BUCKET", "TOKEN"):
            if not get(key):
                raise ConfigurationError(f"{PREFIX}{key}", "is required with the v2 API",
                                         f"set {PREFIX}{key} or use API v1")  # fmt: skip
    return InfluxSettings(
        url=url,
        api="v2" if api == "v2" else "v1",
        database=str(get("DB", InfluxSettings.database)),
        retention_policy=str(get("RP")),
        username=username or url_user,
        password=password or url_password,
        org=str(get("ORG")),
        bucket=str(get("BUCKET")),
        token=token,
        span_dimensions=_dimensions(get("SPAN_DIMENSIONS", None)),
        gzip=_flag(f"{PREFIX}GZIP", get("GZIP", True)),
        verify_tls=_flag(f"{PREFIX}VERIFY_TLS", get("VERIFY_TLS", True)),
        timeout_s=_positive(f"{PREFIX}TIMEOUT", get("TIMEOUT", 5.0)),
        export_deadline_s=_positive(f"{PREFIX}EXPORT_DEADLINE", get("EXPORT_DEADLINE", 10.0)),
        spool_dir=_spool_dir(get("SPOOL_DIR", None)),
        spool_bytes=_byte_count(f"{PREFIX}SPOOL_BYTES", get("SPOOL_BYTES", DEFAULT_SPOOL_BYTES)),
    )


def _dimensions(raw: object) -> frozenset[str]:
    if raw is None or raw == "":
        return DEFAULT_SPAN_DIMENSIONS
    if isinstance(raw, str):
        return frozenset(d.strip() for d in raw.split(",") if d.strip())
    return frozenset(str(d) for d in raw)  # type: ignore[attr-defined]
