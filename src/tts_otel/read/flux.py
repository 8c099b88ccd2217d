"""Spans from InfluxDB's v2 API (2.x, or 1.8+ with Flux on): one Flux query, streamed record by
record through influxdb-client."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError

from tts_otel.exporters.influxdb.settings import PREFIX, InfluxSettings
from tts_otel.read.records import FIELDS, IDS, SpanRecord, from_row
from tts_otel.read.selection import Selection
from tts_otel.read.sources import GRACE_NS, ReadError


def string(value: str) -> str:
    """A Flux string literal (``${`` would start an interpolation)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def _time(ns: int) -> str:
    """A Flux time literal to the nanosecond (RFC 3339)."""
    seconds, fraction = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"


def query(settings: InfluxSettings, selection: Selection) -> str:
    """Filter on the server, one row per span (pivot), one table (group), in time order.

    Every span is a series of its own; without ``group()`` the answer is one table per span.
    """
    start = _time(selection.since_ns) if selection.since_ns is not None else "1970-01-01T00:00:00Z"
    stop = _time(selection.until_ns + GRACE_NS) if selection.until_ns is not None else "now()"
    tests = ['r._measurement == "spans"']
    if selection.trace_id:
        tests.append(f"r.trace_id == {string(selection.trace_id)}")
    tests += [f"r[{string(key)}] == {string(value)}" for key, value in selection.tag_conditions]
    fields = " or ".join(f"r._field == {string(f)}" for f in FIELDS)
    return "\n".join(
        (
            f"from(bucket: {string(settings.bucket)})",
            f"  |> range(start: {start}, stop: {stop})",
            f"  |> filter(fn: (r) => {' and '.join(tests)})",
            f"  |> filter(fn: (r) => {fields})",
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            '  |> drop(columns: ["_start", "_stop", "_measurement"])',
            "  |> group()",
            '  |> sort(columns: ["_time"])',
        )
    )


class FluxSource:
    ordered = True
    lean = False  # whole spans always: the lean read is measured and done for InfluxQL only

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.description = f"InfluxDB (v2, Flux) at {settings.target}"

    def spans(
        self, selection: Selection, lean: bool = False, stages: Collection[str] | None = None
    ) -> Iterator[SpanRecord]:
        dimensions = (*IDS, *self.settings.span_dimensions)
        for row in self.rows(query(self.settings, selection)):
            record = from_row(row, dimensions)
            if record is not None:
                yield record

    def rows(self, flux: str) -> Iterator[dict[str, Any]]:
        settings = self.settings
        client = InfluxDBClient(
            url=settings.url,
            token=settings.token,
            org=settings.org,
            verify_ssl=settings.verify_tls,
            timeout=int(settings.timeout_s * 1000),
        )
        try:
            for record in client.query_api().query_stream(flux, org=settings.org):
                yield record.values
        except ApiException as error:
            raise self._refused(error) from None
        except (HTTPError, OSError) as error:
            raise ReadError(
                f"cannot reach InfluxDB at {settings.url} ({error.__class__.__name__}) to read "
                f"spans from bucket={settings.bucket}: start influxd, or set {PREFIX}URL "
                "(or --influxdb-url)"
            ) from None
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def _refused(self, error: ApiException) -> ReadError:
        settings = self.settings
        if error.status in (401, 403):
            fix = f"set {PREFIX}TOKEN (on 1.8: user:password) and {PREFIX}ORG"
        elif error.status == 404:
            fix = f"set {PREFIX}BUCKET (on 1.8: db/rp) and {PREFIX}ORG"
        else:
            fix = "check the query settings"
        detail = (error.message or error.reason or "").strip() or f"HTTP {error.status}"
        return ReadError(
            f"InfluxDB at {settings.url} answered {error.status} ({detail}) reading spans from "
            f"org={settings.org} bucket={settings.bucket}: {fix}"
        )
