"""InfluxDB line protocol, and attribute values as the collector renders them.

Pure: no I/O. :mod:`.spans` and :mod:`.metrics` write points in the schema
of the collector's ``influxdb`` exporter (otel2influx): spans as measurement
``spans``, span events as ``logs``, metrics in ``telegraf-prometheus-v1``.
One set of dashboards then reads either path. Two documented differences:
dropped-counts are signed integers (InfluxDB 1.x rejects the collector's
unsigned ``7u``), and span links are not written (tts-otel creates none).

What this module changes in every point, so that no value can poison a batch:
- control characters (U+0000-U+001F, U+007F) and lone surrogates (invalid
  UTF-8) in keys and values become U+FFFD;
- a backslash at the end of a tag key or value becomes U+FFFD (it would
  escape the separator after it);
- NaN and infinite float fields are dropped, as are empty tag values, empty
  keys and the reserved field keys ``time``, ``_field`` and ``_measurement``;
- string fields are cut to 64 KiB of UTF-8; tag keys, tag values and field
  keys to 4 KiB (InfluxDB refuses a series key over 64 KiB, and with it the
  point);
- integer fields outside int64 are dropped (InfluxDB refuses the point);
- a metric point left without a field is reported to the caller's ``refused``
  callback, so that it is counted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from json.encoder import encode_basestring as _json_string  # the C encoder where available
from typing import Any, Final

MAX_STRING_BYTES: Final = 64 * 1024
MAX_TAG_BYTES: Final = 4 * 1024
REPLACEMENT: Final = "\ufffd"

_UNSAFE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
# Keys and tag values repeat (stage names, configuration): escaped once, then
# looked up in caches of at most _ESCAPED_LIMIT entries each. str.translate with
# a dict table costs ~1 us a call on this machine, which made the first version
# slower than influxdb-client's Point.
_ESCAPED: dict[str, str] = {}
_ESCAPED_LIMIT: Final = 8192
_RESERVED_FIELDS: Final = frozenset({"time", "_field", "_measurement"})

FieldValue = str | int | float | bool
_INT64: Final = range(-(2**63), 2**63)


def _safe(text: str) -> str:
    return _UNSAFE.sub(REPLACEMENT, text)


def _remember(cache: dict[Any, str], key: Any, value: str) -> str:
    """Store ``value`` in a bounded cache: emptied when full (hot entries refill at once)."""
    if len(cache) >= _ESCAPED_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def html_safe(json_text: str) -> str:
    """Go's encoding/json escapes ``<``, ``>`` and ``&``."""
    return json_text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_TAGS: dict[tuple[str, str], str] = {}


def tag_pair(key: str, value: str) -> str:
    """``key=value`` for a tag, escaped; cached, since tag values repeat."""
    pair = _TAGS.get((key, value))
    if pair is None:
        pair = _remember(_TAGS, (key, value), f"{_tag_part(key)}={_tag_part(value)}")
    return pair


_ATTRIBUTE_TAGS: dict[tuple[str, type, Any], str] = {}


def attribute_tag(name: str, value: Any) -> str:
    """``key=value`` for a span attribute used as a tag; "" when the value is empty.

    Cached by the raw value's type and value (``True == 1``, but "true" != "1").
    """
    key = (name, type(value), value)
    try:
        pair = _ATTRIBUTE_TAGS.get(key)
    except TypeError:  # an unhashable (sequence) value
        text = tag_value(value)
        return tag_pair(name, text) if text else ""
    if pair is None:
        text = tag_value(value)
        pair = _remember(_ATTRIBUTE_TAGS, key, tag_pair(name, text) if text else "")
    return pair


def _tag_part(text: str) -> str:
    """A tag key, tag value or field key, made safe, cut to MAX_TAG_BYTES and escaped."""
    if len(text) * 4 > MAX_TAG_BYTES:  # possibly too long: cut, and not cached
        return _escape(_cut(text, MAX_TAG_BYTES))
    if text.isalnum():  # ids and plain words: nothing to escape
        return text
    escaped = _ESCAPED.get(text)
    if escaped is None:
        escaped = _remember(_ESCAPED, text, _escape(text))
    return escaped


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def _escape(text: str) -> str:
    escaped = _safe(text)
    if escaped.endswith("\\"):
        escaped = escaped[:-1] + REPLACEMENT
    return escaped.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def field_value(value: FieldValue) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i" if value in _INT64 else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return string_field(value)


def string_field(value: str) -> str:
    if not (value.isascii() and value.isprintable()):  # both C-speed; the regex is not
        value = _safe(value)
    # A str of n characters is at most 4n UTF-8 bytes: only long ones need encoding.
    if len(value) * 4 > MAX_STRING_BYTES:
        value = _cut(value, MAX_STRING_BYTES)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], time_ns: int
) -> str | None:
    """One point, or ``None`` when no field survives the checks above."""
    rendered_fields = []
    for key, value in fields.items():
        if not key or key in _RESERVED_FIELDS:
            continue
        rendered = field_value(value)
        if rendered is not None:
            rendered_fields.append(f"{_tag_part(key)}={rendered}")
    if not rendered_fields:
        return None
    head = _safe(measurement).replace(",", "\\,").replace(" ", "\\ ")
    tag_text = "".join(
        f",{_tag_part(key)}={_tag_part(value)}"
        for key, value in sorted(tags.items())
        if key and value
    )
    return f"{head}{tag_text} {','.join(rendered_fields)} {time_ns}"


# --- values as the collector renders them ----------------------------------
def go_float(value: float) -> str:
    """A float as Go's encoding/json and strconv 'f', -1 write it: ``2`` not ``2.0``."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if 1e-6 <= abs(value) < 1e-4:
        return format(Decimal(repr(value)), "f")
    return repr(value)


def tag_value(value: Any) -> str:
    """An attribute as a tag, like pdata's ``AsString``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return go_json(list(value))
    return str(value)


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: sorted keys, ``<>&`` escaped, ``2`` for 2.0.

    (Go also writes 1e-6 <= |x| < 1e-4 without an exponent; Python's form
    there parses to the same value.)
    """

    def convert(item: Any) -> Any:
        kind = type(item)
        if kind is str or kind is int or kind is bool:
            return item
        if kind is float:
            return int(item) if item.is_integer() and abs(item) < 1e21 else item
        if isinstance(item, Mapping):
            return {str(k): convert(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [convert(v) for v in item]
        return item

    text = json.dumps(
        convert(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return html_safe(text)


def json_value(value: Any) -> str:
    """One attribute value as Go's encoding/json writes it (before the <>& escaping)."""
    kind = type(value)
    if kind is str:
        return str(_json_string(value))
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return go_float(value)
    return go_json(value)


_JSON_KEYS: dict[str, str] = {}


def json_key(key: str) -> str:
    encoded = _JSON_KEYS.get(key)
    if encoded is None:
        encoded = _remember(_JSON_KEYS, key, str(_json_string(key)) + ":")
    return encoded
