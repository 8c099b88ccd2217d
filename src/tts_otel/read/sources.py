"""Where spans are read from: an OTLP JSON file or directory, or InfluxDB (v1: InfluxQL,
v2: Flux), chosen and configured by the exporter's ``TTS_OTEL_INFLUXDB_*`` settings."""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Final, Protocol

from tts_otel.exporters.influxdb.settings import InfluxSettings
from tts_otel.read.records import SpanRecord, from_otlp_json
from tts_otel.read.selection import Selection

# A request that starts before --until may end after it: spans are read this far past it,
# so that its tree is whole (requests are selected by their start).
GRACE_NS: Final = 10 * 60 * 10**9


class ReadError(Exception):
    """A read that cannot go on; the message says what was searched and how to fix it."""


class Source(Protocol):
    description: str
    ordered: bool
    """Spans come in order of their start time (so requests can be completed as they go)."""
    lean: bool
    """``spans(lean=True)`` gives stage spans as stage, time and ids only."""

    def spans(
        self, selection: Selection, lean: bool = False, stages: Collection[str] | None = None
    ) -> Iterator[SpanRecord]:
        """The selected spans. ``lean``: what ``report``, ``compare`` and the ranking of
        ``trace`` need (whole spans without a stage; of stage spans, only those in
        ``stages`` if given, and their parent stages, as stage, start, duration, trace, span
        and parent id); a source may give more."""
        ...


class FileSource:
    ordered = False
    lean = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)

    def spans(
        self, selection: Selection, lean: bool = False, stages: Collection[str] | None = None
    ) -> Iterator[SpanRecord]:
        for span in from_otlp_json(self.path):
            if selection.trace_id is None or span.trace_id == selection.trace_id:
                yield span


def file_source(raw: str) -> FileSource:
    path = Path(raw)
    if path.is_dir():
        path = path / "traces.jsonl"
    if not path.exists():
        raise ReadError(
            f"no trace file at {path}; run `tts-otel demo` first, or read InfluxDB with --influxdb"
        )
    return FileSource(path)


def influx_source(settings: InfluxSettings) -> Source:
    # Imported here: the file path needs neither the HTTP nor the influxdb-client code.
    if settings.api == "v2":
        from tts_otel.read.flux import FluxSource

        return FluxSource(settings)
    from tts_otel.read.influxql import InfluxQLSource

    return InfluxQLSource(settings)


class Progress:
    """Spans and requests read so far, on stderr, only when stderr is a terminal."""

    def __init__(self, what: str, enabled: bool | None = None) -> None:
        self.what = what
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.spans = 0
        self.requests = 0
        self._shown = 0.0

    def count(self, spans: Iterable[SpanRecord]) -> Iterator[SpanRecord]:
        for span in spans:
            self.spans += 1
            if self.enabled and not self.spans % 1000:
                self._show()
            yield span

    def _show(self) -> None:
        now = time.monotonic()
        if now - self._shown < 0.2:
            return
        self._shown = now
        sys.stderr.write(f"\r  reading {self.what}: {self.spans:,} spans")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
