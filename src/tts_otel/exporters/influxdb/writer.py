"""The writer both InfluxDB exporters share: line protocol through the shared delivery
(:mod:`tts_otel.exporters.delivery`: retried, paused, spooled, counted).

429 and 5xx are retried; a connection error pauses; any other 4xx is
permanent. What is InfluxDB's own is here: points whose series key InfluxDB
would refuse are left out before the write, and a partial write's answer is
read for the number of points it dropped. Credentials never appear in logs,
errors or ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from tts_otel.exporters.delivery import PartialWriteError, SpoolingWriter, Transport
from tts_otel.exporters.influxdb.settings import InfluxSettings
from tts_otel.exporters.influxdb.transport import (
    V1Transport,
    V2Transport,
    dropped_by_partial_write,
)

# What InfluxDB 1.x (TSM, inmem index) answers once the collector's span schema
# (trace_id and span_id as tags: one new series per span) meets its defaults.
_SERIES_LIMITS: Final = ("max-values-per-tag limit exceeded", "max-series-per-database limit")
SPAN_STORAGE_FIX: Final = (
    "spans are stored as the collector stores them, with trace_id and span_id as tags, so "
    "every span is a new series; on InfluxDB 1.x set, in [data], max-values-per-tag = 0, "
    'max-series-per-database = 0 and index-version = "tsi1", and write spans to a short '
    "retention policy (TTS_OTEL_INFLUXDB_RP); InfluxDB 3 has no such limit"
)
# A series key (measurement and tags) above this is refused by InfluxDB.
MAX_KEY_BYTES: Final = 65535
_KEY_END = re.compile(r"(?:[^ \\]|\\.)*")


def _key_too_long(line: str) -> bool:
    if len(line) * 4 <= MAX_KEY_BYTES:  # a character is at most 4 UTF-8 bytes
        return False
    key = _KEY_END.match(line)
    return key is not None and len(key.group().encode("utf-8", "replace")) > MAX_KEY_BYTES


class InfluxWriter(SpoolingWriter):
    """Sends batches of line protocol in order; spools what cannot be sent; counts
    everything. Never raises."""

    def __init__(self, settings: InfluxSettings, transport: Transport | None = None) -> None:
        self.settings = settings
        super().__init__(
            transport or (V2Transport(settings) if settings.api == "v2" else V1Transport(settings)),
            settings,
            settings.export_deadline_s,
            backend="InfluxDB",
            target=settings.target,
            spool_suffix=".lp",
            spool_setting="TTS_OTEL_INFLUXDB_SPOOL_DIR",
        )

    def write(self, lines: Sequence[str]) -> bool:
        """Send ``lines`` after anything spooled; ``False`` when they were spooled or dropped."""
        lines = self._storable(lines)
        if not lines:
            return True
        return self.deliver(("\n".join(lines) + "\n").encode("utf-8"), len(lines))

    def _storable(self, lines: Sequence[str]) -> Sequence[str]:
        """``lines`` without points InfluxDB would refuse: one refused point fails no other."""
        if not any(_key_too_long(line) for line in lines):
            return lines
        kept = [line for line in lines if not _key_too_long(line)]
        self.refuse(len(lines) - len(kept), f"series key over {MAX_KEY_BYTES} bytes, point dropped")
        return kept

    def _partially_dropped(self, error: PartialWriteError, points: int) -> int:
        message = str(error)
        if not any(limit in message for limit in _SERIES_LIMITS):
            super()._partially_dropped(error, points)
        elif "series limit" not in self._refusals_logged:
            self._refusals_logged.add("series limit")
            self._log.error(
                "tts-otel: InfluxDB at %s stores no new series: %s. Fix: %s. Other points "
                "are still stored; refused ones are counted as dropped",
                self.settings.target,
                message.strip()[:300],
                SPAN_STORAGE_FIX,
            )
        return dropped_by_partial_write(message, points)
