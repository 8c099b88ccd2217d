"""Which requests a read command looks at: a time range and ``KEY=VALUE`` conditions on the
bounded dimensions."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from tts_otel import semconv
from tts_otel.exporters.influxdb.line_protocol import tag_value

# Short names people type -> the attribute (and, where it is one, InfluxDB tag) key.
DIMENSIONS: Final = {
    "sample_rate": semconv.ATTR_SAMPLE_RATE,
    "kv_cache": semconv.ATTR_KV_CACHE,
    "model_version": semconv.ATTR_MODEL_VERSION,
    "model": semconv.ATTR_MODEL_NAME,
    "length_bin": semconv.ATTR_TEXT_LENGTH_BIN,
    "streaming": semconv.ATTR_STREAMING,
    "kind": semconv.ATTR_REQUEST_KIND,
    "outcome": semconv.ATTR_OUTCOME,
    "service": "service.name",
}
# Not written as a tag (nor as a span attribute): derived from error.type on the request.
DERIVED: Final = frozenset({semconv.ATTR_OUTCOME})
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


class SelectionError(ValueError):
    """A selection that cannot be understood; the message says what to type instead."""


def dimension(name: str) -> str:
    """The attribute key for a short name (or an attribute key given as is)."""
    if name in DIMENSIONS:
        return DIMENSIONS[name]
    if name in DIMENSIONS.values():
        return name
    known = ", ".join(DIMENSIONS)
    raise SelectionError(f"unknown dimension {name!r}: use one of {known}")


def short_name(key: str) -> str:
    return next((name for name, full in DIMENSIONS.items() if full == key), key)


def parse_time(raw: str, now_ns: int | None = None) -> int:
    """``1h``, ``2d``, ``30m`` (ago) or an ISO 8601 timestamp (UTC unless it has an offset)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    ago = _AGO.match(raw.strip())
    if ago:
        return now_ns - int(float(ago.group(1)) * _UNITS[ago.group(2)] * 1e9)
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise SelectionError(
            f"cannot read the time {raw!r}: use e.g. 1h, 2d, 30m or 2025-01-31T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def parse_where(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise SelectionError(f"expected KEY=VALUE, got {raw!r} (e.g. kv_cache=true)")
    return dimension(key.strip()), value.strip()


@dataclass(frozen=True)
class Selection:
    since_ns: int | None = None
    until_ns: int | None = None
    where: tuple[tuple[str, str], ...] = ()
    trace_id: str | None = None

    @property
    def tag_conditions(self) -> tuple[tuple[str, str], ...]:
        """The conditions a query can push to the server (tags on every span of a request)."""
        return tuple((key, value) for key, value in self.where if key not in DERIVED)

    def accepts(self, start_ns: int, attributes: Mapping[str, Any]) -> bool:
        """Whether a request (its root span's start and attributes) is selected."""
        if self.since_ns is not None and start_ns < self.since_ns:
            return False
        if self.until_ns is not None and start_ns >= self.until_ns:
            return False
        for key, value in self.where:
            actual = outcome(attributes) if key in DERIVED else attributes.get(key)
            if actual is None or tag_value(actual) != value:
                return False
        return True

    def describe(self) -> str:
        """For messages: what was asked for, as it was typed."""
        parts = [f"{short_name(key)}={value}" for key, value in self.where]
        if self.trace_id:
            parts.append(f"trace {self.trace_id}")
        if self.since_ns is not None:
            parts.append(f"since {_iso(self.since_ns)}")
        if self.until_ns is not None:
            parts.append(f"until {_iso(self.until_ns)}")
        return ", ".join(parts) or "all requests"

    def narrowed(self, other: Selection) -> Selection:
        """This selection with ``other``'s conditions added (compare: shared flags + A or B)."""
        return Selection(
            since_ns=other.since_ns if other.since_ns is not None else self.since_ns,
            until_ns=other.until_ns if other.until_ns is not None else self.until_ns,
            where=self.where + other.where,
            trace_id=other.trace_id or self.trace_id,
        )


def outcome(attributes: Mapping[str, Any]) -> str:
    failed = semconv.ATTR_ERROR_TYPE in attributes or attributes.get("otel.status_code") == "Error"
    return semconv.OUTCOME_ERROR if failed else semconv.OUTCOME_OK


def parse_spec(raw: str, now_ns: int | None = None) -> Selection:
    """One side of ``compare``: ``k=v[,k=v]`` or a time range ``SINCE..UNTIL`` (``2d..1d``,
    ``1h..``), or both, comma-separated."""
    since = until = None
    where: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        if ".." in part and "=" not in part:
            start, _, end = part.partition("..")
            since = parse_time(start, now_ns) if start else None
            until = parse_time(end, now_ns) if end else None
        else:
            where.append(parse_where(part))
    if since is None and until is None and not where:
        raise SelectionError(f"empty selection {raw!r}: use e.g. kv_cache=true or 2d..1d")
    return Selection(since_ns=since, until_ns=until, where=tuple(where))


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def selection(
    since: str | None, until: str | None, where: Sequence[str], trace_id: str | None = None
) -> Selection:
    now_ns = time.time_ns()
    return Selection(
        since_ns=parse_time(since, now_ns) if since else None,
        until_ns=parse_time(until, now_ns) if until else None,
        where=tuple(parse_where(item) for item in where),
        trace_id=trace_id,
    )
