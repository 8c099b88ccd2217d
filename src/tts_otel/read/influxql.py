"""Spans from InfluxDB's v1 API: one InfluxQL query over ``/query``, answered in chunks that
are parsed as they arrive (memory holds one chunk, not the answer)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

from tts_otel.exporters.influx_config import PREFIX, InfluxSettings
from tts_otel.read.records import FIELDS, IDS, SpanRecord, from_row
from tts_otel.read.selection import Selection
from tts_otel.read.sources import GRACE_NS, ReadError

CHUNK_SIZE: Final = 10_000


def identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def statement(settings: InfluxSettings, selection: Selection) -> str:
    """The one query: fields and tags by name, with the time range and tag conditions in it.

    No GROUP BY: every span is a series of its own (trace_id and span_id are tags), and an
    ungrouped raw query returns them merged in time order, which the assembler relies on.
    """
    columns = [identifier(f) for f in FIELDS]
    columns += [identifier(t) + "::tag" for t in (*IDS, *sorted(settings.span_dimensions))]
    conditions = []
    if selection.trace_id:
        conditions.append(f'"trace_id"::tag = {literal(selection.trace_id)}')
    if selection.since_ns is not None:
        conditions.append(f"time >= {selection.since_ns}")
    if selection.until_ns is not None:
        conditions.append(f"time < {selection.until_ns + GRACE_NS}")
    for key, value in selection.tag_conditions:
        conditions.append(f"{identifier(key)}::tag = {literal(value)}")
    source = identifier("spans")
    if settings.retention_policy:
        source = f"{identifier(settings.database)}.{identifier(settings.retention_policy)}.{source}"
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {', '.join(columns)} FROM {source}{where}"


class InfluxQLSource:
    ordered = True

    def __init__(self, settings: InfluxSettings, chunk_size: int = CHUNK_SIZE) -> None:
        self.settings = settings
        self.chunk_size = chunk_size
        self.description = f"InfluxDB (v1, InfluxQL) at {settings.target}"

    def spans(self, selection: Selection) -> Iterator[SpanRecord]:
        dimensions = (*IDS, *self.settings.span_dimensions)
        for row in self.rows(statement(self.settings, selection)):
            record = from_row(row, dimensions)
            if record is not None:
                yield record

    def rows(self, query: str) -> Iterator[dict[str, Any]]:
        """Each row as a dict of column -> value, chunk after chunk."""
        for answer in self._answers(query):
            for result in answer.get("results", []):
                if "error" in result:
                    raise self._refused(result["error"])
                for series in result.get("series", []):
                    columns = series["columns"]
                    for values in series["values"]:
                        yield dict(zip(columns, values, strict=True))

    def _answers(self, query: str) -> Iterator[dict[str, Any]]:
        settings = self.settings
        params = {"db": settings.database, "q": query, "epoch": "ns", "chunked": "true",
                  "chunk_size": str(self.chunk_size)}  # fmt: skip
        if settings.retention_policy:
            params["rp"] = settings.retention_policy
        request = urllib.request.Request(f"{settings.url}/query?{urllib.parse.urlencode(params)}")
        if settings.username or settings.password:
            secret = f"{settings.username}:{settings.password}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(secret).decode())
        context = None
        if not settings.verify_tls:  # the exporter's own setting: a self-signed test server
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout_s, context=context) as r:
                for line in r:
                    if line.strip():
                        answer = json.loads(line)
                        if "error" in answer:
                            raise self._refused(answer["error"])
                        yield answer
        except urllib.error.HTTPError as error:
            raise self._http_error(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ReadError(
                f"cannot reach InfluxDB at {settings.url} ({reason}) to read spans from "
                f"db={settings.database}: start influxd, or set {PREFIX}URL (or --influxdb-url)"
            ) from None

    def _http_error(self, error: urllib.error.HTTPError) -> ReadError:
        if error.code in (401, 403):
            return ReadError(
                f"InfluxDB at {self.settings.url} refused the credentials (HTTP {error.code}) "
                f"reading db={self.settings.database}: set {PREFIX}USERNAME and {PREFIX}PASSWORD"
            )
        try:
            detail = json.loads(error.read()).get("error", "")
        except ValueError:
            detail = ""
        return self._refused(detail or f"HTTP {error.code}")

    def _refused(self, detail: str) -> ReadError:
        fix = f"set {PREFIX}DB" if "database not found" in detail else "check the query settings"
        return ReadError(
            f"InfluxDB at {self.settings.url} answered {detail!r} reading spans from "
            f"db={self.settings.database}: {fix}"
        )
