"""One span as the read side needs it, whatever it was read from: the SDK, an OTLP JSON
file, or a row of the InfluxDB ``spans`` measurement (either write path: one schema)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import format_span_id, format_trace_id

# Fields of the spans measurement the read side uses (see exporters/influxdb/line_protocol.py).
NAME: Final = "span.name"
PARENT: Final = "parent_span_id"
DURATION: Final = "duration_nano"
END: Final = "end_time_unix_nano"
ATTRIBUTES: Final = "attributes"
STATUS: Final = "otel.status_code"
FIELDS: Final = (NAME, PARENT, DURATION, END, ATTRIBUTES, STATUS)
IDS: Final = ("trace_id", "span_id")


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """What the report needs of a span, whatever it was read from."""

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    span_id: str = ""
    parent_id: str = ""

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def from_sdk(spans: Iterable[ReadableSpan]) -> Iterator[SpanRecord]:
    for span in spans:
        if span.context is None or span.start_time is None or span.end_time is None:
            continue
        yield SpanRecord(
            trace_id=format_trace_id(span.context.trace_id),
            span_id=format_span_id(span.context.span_id),
            parent_id=format_span_id(span.parent.span_id) if span.parent else "",
            name=span.name,
            start_ns=span.start_time,
            end_ns=span.end_time,
            attributes={**span.resource.attributes, **(span.attributes or {})},
        )


def _otlp_value(value: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def _otlp_attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {a["key"]: _otlp_value(a.get("value", {})) for a in items}


def from_otlp_json(path: Path) -> Iterator[SpanRecord]:
    """Spans from an OTLP JSON lines file (as the ``file`` exporter writes).

    Resource attributes are merged under the span's (as InfluxDB gets them), so that
    ``service.name`` selects and groups the same way from a file as from InfluxDB.
    """
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", []):
                resource = _otlp_attributes(
                    resource_spans.get("resource", {}).get("attributes", [])
                )
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for span in scope_spans.get("spans", []):
                        yield SpanRecord(
                            trace_id=span["traceId"],
                            span_id=span["spanId"],
                            parent_id=span.get("parentSpanId", ""),
                            name=span["name"],
                            start_ns=int(span["startTimeUnixNano"]),
                            end_ns=int(span["endTimeUnixNano"]),
                            attributes={
                                **resource,
                                **_otlp_attributes(span.get("attributes", [])),
                            },
                        )


class RowAttributes(Mapping[str, Any]):
    """A stored span's tags, then its ``attributes`` JSON, parsed only when a key that is not
    a tag is asked for: most rows are read for their stage tag and duration alone, and
    parsing every JSON string was most of a report's time."""

    __slots__ = ("_merged", "_raw", "_status", "_tags")

    def __init__(self, tags: dict[str, Any], raw: str | None, status: str | None) -> None:
        self._tags, self._raw, self._status = tags, raw, status
        self._merged: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._merged is None:
            merged = json.loads(self._raw) if self._raw else {}
            merged.update(self._tags)
            if self._status:
                merged[STATUS] = self._status
            self._merged = merged
        return self._merged

    def __getitem__(self, key: str) -> Any:
        if key in self._tags:
            return self._tags[key]
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def from_row(row: Mapping[str, Any], dimensions: Iterable[str]) -> SpanRecord | None:
    """A row of the ``spans`` measurement (fields and tags by name); ``None`` if incomplete.

    The start is ``end - duration``, both exact integers: Flux hands ``_time`` over as a
    datetime, which keeps only microseconds. A row without the end field (InfluxQL's lean
    read) has the start in ``time`` (ns, exact): the end is ``time + duration``.
    """
    end, duration, name = row.get(END), row.get(DURATION), row.get(NAME)
    if end is None and duration is not None and isinstance(row.get("time"), int):
        end = row["time"] + duration
    if end is None or duration is None or name is None:
        return None
    tags = {key: row[key] for key in dimensions if row.get(key) is not None}
    return SpanRecord(
        trace_id=str(row["trace_id"]),
        span_id=str(row.get("span_id") or ""),
        parent_id=str(row.get(PARENT) or ""),
        name=str(name),
        start_ns=int(end) - int(duration),
        end_ns=int(end),
        attributes=RowAttributes(tags, row.get(ATTRIBUTES), row.get(STATUS)),
    )
