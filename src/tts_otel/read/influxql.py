"""Spans from InfluxDB's v1 API: one InfluxQL query over ``/query``, answered in chunks that
are parsed as they arrive (memory holds one chunk, not the answer)."""

from __future__ import annotations

import base64
import heapq
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Final

from tts_otel import semconv
from tts_otel.exporters.influxdb.settings import PREFIX, InfluxSettings
from tts_otel.read.records import (
    ATTRIBUTES,
    DURATION,
    FIELDS,
    IDS,
    NAME,
    PARENT,
    STATUS,
    SpanRecord,
    from_row,
)
from tts_otel.read.selection import Selection
from tts_otel.read.sources import GRACE_NS, ReadError

# Rows per chunk of each query's answer; the lean read holds one chunk per query (seven) at
# once. 10,000 kept ~20 MiB of parsed rows at 200,000 spans that 50,000 never reached
# (peak RSS 49.5 MiB at 50,000 spans, 71.7 MiB at 200,000); 2,000 bounds that earlier.
CHUNK_SIZE: Final = 2_000
STAGE: Final = semconv.ATTR_STAGE
LEAN_ROOT_FIELDS: Final = (NAME, PARENT, DURATION, ATTRIBUTES, STATUS)


def _start(span: SpanRecord) -> int:
    return span.start_ns


def _with_parents(stage: str) -> Iterator[str]:
    """``acoustic.llm`` -> ``acoustic``, ``acoustic.llm``."""
    parts = stage.split(".")
    for depth in range(1, len(parts) + 1):
        yield ".".join(parts[:depth])


def identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def statement(
    settings: InfluxSettings,
    selection: Selection,
    columns: Sequence[str] | None = None,
    conditions: Sequence[str] = (),
) -> str:
    """One query: fields and tags by name, with the time range and tag conditions in it.

    No GROUP BY: every span is a series of its own (trace_id and span_id are tags), and an
    ungrouped raw query returns them merged in time order, which the assembler relies on.
    ``columns`` (all the read side uses by default) and ``conditions`` narrow a lean read.
    """
    if columns is None:
        columns = [identifier(f) for f in FIELDS]
        columns += [identifier(t) + "::tag" for t in (*IDS, *sorted(settings.span_dimensions))]
    where = list(conditions)
    if selection.trace_id:
        where.append(f'"trace_id"::tag = {literal(selection.trace_id)}')
    if selection.since_ns is not None:
        where.append(f"time >= {selection.since_ns}")
    if selection.until_ns is not None:
        where.append(f"time < {selection.until_ns + GRACE_NS}")
    for key, value in selection.tag_conditions:
        where.append(f"{identifier(key)}::tag = {literal(value)}")
    source = identifier("spans")
    if settings.retention_policy:
        source = f"{identifier(settings.database)}.{identifier(settings.retention_policy)}.{source}"
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {', '.join(columns)} FROM {source}{clause}"


class InfluxQLSource:
    ordered = True

    def __init__(self, settings: InfluxSettings, chunk_size: int = CHUNK_SIZE) -> None:
        self.settings = settings
        self.chunk_size = chunk_size
        self.description = f"InfluxDB (v1, InfluxQL) at {settings.target}"
        self.lean = STAGE in settings.span_dimensions  # stage spans are told apart by the tag

    def spans(
        self, selection: Selection, lean: bool = False, stages: Collection[str] | None = None
    ) -> Iterator[SpanRecord]:
        dimensions = (*IDS, *self.settings.span_dimensions)
        if lean and self.lean and not selection.trace_id:
            yield from self._lean(selection, dimensions, stages)
            return
        for row in self.rows(statement(self.settings, selection)):
            record = from_row(row, dimensions)
            if record is not None:
                yield record

    def _lean(
        self, selection: Selection, dimensions: Sequence[str], stages: Collection[str] | None
    ) -> Iterator[SpanRecord]:
        """Spans without a stage whole, and each stage's spans as start, duration, trace,
        span and parent id only, one query per stage value, merged back into time order here.

        Measured on influxd 1.8.10 over 200,000 spans (16,666 requests), server CPU: the one
        query of every column 15.3 s; spans without a stage (``tts.stage = ''``), all
        columns, 1.7 s; one stage's spans, duration and trace_id, 0.66 s for 33,000. Every
        span is a series, and influxd's cost is per series and per field read, so reading
        one field of the 92% of spans that are stage spans is the gain. An equality on a tag
        picks series from the index; a time slice does not (a quarter of the range cost 70%
        of the whole), so the range is not split in time. The streams are read interleaved,
        so influxd works on all of them at once. The ids (a tag and a field more) raised
        the report over 200,000 spans from 6.5 s of influxd CPU to 8.6-8.8 s: they are what
        tells apart several requests in one trace (a web UI's clicks under one HTTP span).
        """
        found = [value for key, value in self.tag_values(STAGE) if key == STAGE]
        # A nested stage's spans hang under their parent stage's: read those too, so that
        # each is placed in its request by parent id.
        needed = None if stages is None else {p for s in stages for p in _with_parents(s)}
        wanted = [value for value in found if needed is None or value in needed]
        streams = [self._unstaged(selection, dimensions)]
        streams += [self._stage(selection, value) for value in wanted]
        yield from heapq.merge(*streams, key=_start)

    def _unstaged(self, selection: Selection, dimensions: Sequence[str]) -> Iterator[SpanRecord]:
        # A tag compared with '' matches the series that lack it: the roots, and any span
        # of the user's own without a stage.
        # Not the end field (the end is time + duration): on 200,000 spans this query cost
        # influxd 1.65 s of CPU with all six fields; each field read is a cursor per series.
        # The parent is read: a request is found by it (a trace may hold several).
        columns = [identifier(f) for f in LEAN_ROOT_FIELDS]
        columns += [identifier(t) + "::tag" for t in (*IDS, *sorted(self.settings.span_dimensions))]
        stageless = [f"{identifier(STAGE)}::tag = ''"]
        query = statement(self.settings, selection, columns, stageless)
        for row in self.rows(query):
            record = from_row(row, dimensions)
            if record is not None:
                yield record

    def _stage(self, selection: Selection, stage: str) -> Iterator[SpanRecord]:
        # The ids and the parent place each span in its request: a trace may hold several
        # requests, at once (a web UI's clicks under one HTTP span), so time cannot.
        columns = [identifier(DURATION), identifier(PARENT)]
        columns += [identifier(t) + "::tag" for t in IDS]
        condition = f"{identifier(STAGE)}::tag = {literal(stage)}"
        query = statement(self.settings, selection, columns, [condition])
        attributes = {STAGE: stage}  # one mapping for all of this stage's spans
        for series in self.series(query):
            at = {name: index for index, name in enumerate(series["columns"])}
            time_at, duration_at, trace_at = at["time"], at[DURATION], at["trace_id"]
            span_at, parent_at = at["span_id"], at[PARENT]
            for values in series["values"]:
                start, duration = values[time_at], values[duration_at]
                if duration is not None:
                    yield SpanRecord(
                        trace_id=str(values[trace_at]),
                        name="",
                        start_ns=int(start),
                        end_ns=int(start) + int(duration),
                        attributes=attributes,
                        span_id=str(values[span_at] or ""),
                        parent_id=str(values[parent_at] or ""),
                    )

    def tag_values(self, key: str) -> list[tuple[str, str]]:
        """(key, value) of a tag of the spans measurement (read from the index: milliseconds)."""
        source = identifier("spans")
        if self.settings.retention_policy:
            rp = identifier(self.settings.retention_policy)
            source = f"{identifier(self.settings.database)}.{rp}.{source}"
        query = f"SHOW TAG VALUES FROM {source} WITH KEY = {identifier(key)}"
        return [(str(row["key"]), str(row["value"])) for row in self.rows(query)]

    def rows(self, query: str) -> Iterator[dict[str, Any]]:
        """Each row as a dict of column -> value, chunk after chunk."""
        for series in self.series(query):
            columns = series["columns"]
            for values in series["values"]:
                yield dict(zip(columns, values, strict=True))

    def series(self, query: str) -> Iterator[dict[str, Any]]:
        """Each series of each chunk: ``columns`` and ``values`` (rows as lists)."""
        for answer in self._answers(query):
            for result in answer.get("results", []):
                if "error" in result:
                    raise self._refused(result["error"])
                yield from result.get("series", [])

    def _answers(self, query: str) -> Iterator[dict[str, Any]]:
        settings = self.settings
        params = {
            "db": settings.database,
            "q": query,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(self.chunk_size),
        }
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
        fix = "check the query settings"
        if "database not found" in detail or "default retention policy not set" in detail:
            # The second is 2.x's answer for a database that no DBRP mapping names.
            fix = f"set {PREFIX}DB (on InfluxDB 2.x: the database of a bucket's DBRP mapping)"
        return ReadError(
            f"InfluxDB at {self.settings.url} answered {detail!r} reading spans from "
            f"db={self.settings.database}: {fix}"
        )
