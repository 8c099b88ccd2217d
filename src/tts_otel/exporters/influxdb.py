"""The direct InfluxDB exporter: spans and metrics in the collector's schema, without a collector.

Batching is the SDK's (BatchSpanProcessor, PeriodicExportingMetricReader);
each export is one bounded, synchronous write on the SDK's own thread, never
on the request path. 429 and 5xx are retried with exponential backoff and
jitter, honouring ``Retry-After``, within one deadline per export. What still
fails goes to a bounded spool and is replayed in order once the server
answers. After such a failure the writer stops calling the server for a
growing, jittered pause (up to ``BACKOFF_MAX_S``): exports in it go straight
to the spool, so a dead server costs each export microseconds, not a timeout.
A connection error (refused, reset, timed out) skips the retries inside the
export and starts that pause at once: the backoff for an absent server runs
across exports. Retrying it inside the export blocked the SDK's thread for
the whole deadline, and at 450 spans/s its 2048-span queue overflowed behind
it, dropping spans before they could reach the spool.
Shutdown makes one last attempt to deliver the spool. Any other 4xx is
permanent: it is logged once per cause, with the server's message, and its
points are counted as dropped.
Credentials never appear in logs, errors or ``repr``.

Settings come from arguments or ``TTS_OTEL_INFLUXDB_*`` variables; see
:func:`influx_settings`.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tts_otel import semconv
from tts_otel.config import Settings
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.line_protocol import metric_lines, span_lines
from tts_otel.exporters.parts import ExporterParts
from tts_otel.exporters.spool import DiskSpool, MemorySpool, Spool

_log = logging.getLogger(__name__)

# service.name plus the bounded stage and configuration attributes: the tags
# dashboards group stage spans by. Outcome and error type stay in the JSON.
DEFAULT_SPAN_DIMENSIONS: Final = frozenset(
    {"service.name"}
    | (semconv.METRIC_ATTRIBUTE_KEYS - {semconv.ATTR_OUTCOME, semconv.ATTR_ERROR_TYPE})
)
DEFAULT_SPOOL_BYTES: Final = 64 * 1024 * 1024


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


def _env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(name, f"{raw!r} is not a boolean", "use true or false")


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(name, f"{raw!r} is not a positive number", "use e.g. 10")
    return value


def influx_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> InfluxSettings:
    """Settings from ``overrides``, else ``TTS_OTEL_INFLUXDB_*`` variables, else defaults.

    Variables: URL, API (v1 or v2; v2 when a TOKEN is set), DB, RP, USERNAME,
    PASSWORD, ORG, BUCKET, TOKEN, SPAN_DIMENSIONS (comma-separated), GZIP,
    VERIFY_TLS, TIMEOUT (s), EXPORT_DEADLINE (s), SPOOL_DIR, SPOOL_BYTES.
    """
    env = os.environ if environ is None else environ

    def get(key: str, default: str = "") -> str:
        return str(overrides.get(key.lower(), env.get(f"TTS_OTEL_INFLUXDB_{key}", default)))

    url = get("URL", InfluxSettings.url).rstrip("/")
    if (
        urllib.parse.urlsplit(url).scheme not in ("http", "https")
        or not urllib.parse.urlsplit(url).netloc
    ):
        raise ConfigurationError("TTS_OTEL_INFLUXDB_URL", f"{url!r} is not an http(s) URL",
                                 "use e.g. http://127.0.0.1:8086")  # fmt: skip
    token = get("TOKEN")
    api = get("API", "v2" if token else "v1").lower()
    if api not in ("v1", "v2"):
        raise ConfigurationError("TTS_OTEL_INFLUXDB_API", f"{api!r} is not an API version",
                                 "use v1 (InfluxDB 1.x /write) or v2 (/api/v2/write)")  # fmt: skip
    if api == "v2":
        for key in ("ORG", "BUCKET", "TOKEN"):
            if not get(key):
                raise ConfigurationError(f"TTS_OTEL_INFLUXDB_{key}", "is required with the v2 API",
                                         f"set TTS_OTEL_INFLUXDB_{key} or use API v1")  # fmt: skip
    dimensions = overrides.get("span_dimensions")
    if dimensions is None:
        raw = env.get("TTS_OTEL_INFLUXDB_SPAN_DIMENSIONS")
        dimensions = (
            frozenset(d.strip() for d in raw.split(",") if d.strip())
            if raw
            else DEFAULT_SPAN_DIMENSIONS
        )
    spool_dir = overrides.get("spool_dir", env.get("TTS_OTEL_INFLUXDB_SPOOL_DIR"))
    return InfluxSettings(
        url=url,
        api="v2" if api == "v2" else "v1",
        database=get("DB", InfluxSettings.database),
        retention_policy=get("RP"),
        username=get("USERNAME"),
        password=get("PASSWORD"),
        org=get("ORG"),
        bucket=get("BUCKET"),
        token=token,
        span_dimensions=frozenset(dimensions),
        gzip=bool(overrides.get("gzip", _env_flag(env, "TTS_OTEL_INFLUXDB_GZIP", True))),
        verify_tls=bool(
            overrides.get("verify_tls", _env_flag(env, "TTS_OTEL_INFLUXDB_VERIFY_TLS", True))
        ),
        timeout_s=float(
            overrides.get("timeout_s", _env_number(env, "TTS_OTEL_INFLUXDB_TIMEOUT", 5.0))
        ),
        export_deadline_s=float(
            overrides.get(
                "export_deadline_s", _env_number(env, "TTS_OTEL_INFLUXDB_EXPORT_DEADLINE", 10.0)
            )
        ),
        spool_dir=Path(spool_dir) if spool_dir else None,
        spool_bytes=int(
            overrides.get(
                "spool_bytes",
                _env_number(env, "TTS_OTEL_INFLUXDB_SPOOL_BYTES", DEFAULT_SPOOL_BYTES),
            )
        ),
    )


# --- transport ----------------------------------------------------------------
class RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnreachableError(RetryableError):
    """No HTTP answer at all: nothing listens, or nothing answers in time."""


class PermanentError(Exception):
    pass


class Transport(Protocol):
    def write(self, body: bytes) -> None:
        """Write line protocol; raise RetryableError or PermanentError."""
        ...

    def close(self) -> None: ...


def authorization(settings: InfluxSettings) -> str | None:
    """The Authorization header: ``Token`` for v2, ``Basic`` for v1 with a user, else none."""
    if settings.api == "v2":
        return f"Token {settings.token}"
    if settings.username:
        secret = f"{settings.username}:{settings.password}".encode()
        return "Basic " + base64.b64encode(secret).decode()
    return None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _classify(status: int, message: str, headers: Mapping[str, str] | None) -> Exception:
    if status == 429 or status >= 500:
        return RetryableError(f"HTTP {status}: {message}", _retry_after(headers))
    hint = {
        401: "authorization failed: check the username and password (v1) or the token (v2)",
        403: "permission denied: the user or token may not write here",
        404: "not found: check the database (v1) or org and bucket (v2)",
    }.get(status, "the server rejected the data")
    return PermanentError(f"HTTP {status}, {hint}: {message.strip()[:300]}")


class V1Transport:
    """``POST /write?db=&rp=&precision=ns`` with Basic auth: InfluxDB 1.x, and 2.x's v1 API."""

    def __init__(self, settings: InfluxSettings) -> None:
        query = {"db": settings.database, "precision": "ns"}
        if settings.retention_policy:
            query["rp"] = settings.retention_policy
        self._url = f"{settings.url}/write?{urllib.parse.urlencode(query)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        header = authorization(settings)
        if header is not None:
            self._headers["Authorization"] = header
        self._gzip = settings.gzip
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = settings.timeout_s
        self._tls = None if settings.verify_tls else ssl._create_unverified_context()

    def write(self, body: bytes) -> None:
        data = gzip.compress(body, compresslevel=1) if self._gzip else body
        request = urllib.request.Request(self._url, data=data, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._tls):
                return
        except urllib.error.HTTPError as error:
            message = error.read().decode("utf-8", "replace")
            raise _classify(error.code, message, dict(error.headers)) from None
        except (urllib.error.URLError, OSError) as error:
            raise UnreachableError(
                f"cannot reach InfluxDB: {getattr(error, 'reason', error)}"
            ) from None

    def close(self) -> None:
        """Nothing held between writes."""


class V2Transport:
    """``POST /api/v2/write`` through influxdb-client's synchronous write API (no thread)."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        # retries=False: this exporter retries itself, within its own deadline.
        self._client = InfluxDBClient(
            url=settings.url, token=settings.token, org=settings.org, enable_gzip=settings.gzip,
            verify_ssl=settings.verify_tls, timeout=int(settings.timeout_s * 1000), retries=False,
        )  # fmt: skip
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket, self._org = settings.bucket, settings.org

    def write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            precision: Any = WritePrecision.NS  # the enum's stub says str
            self._api.write(self._bucket, self._org, body, write_precision=precision)
        except ApiException as error:
            message = (
                error.body.decode("utf-8", "replace")
                if isinstance(error.body, bytes)
                else str(error.body)
            )
            raise _classify(int(error.status or 0), message, dict(error.headers or {})) from None
        except Exception as error:
            raise UnreachableError(f"cannot reach InfluxDB: {type(error).__name__}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


# --- the writer both exporters share ------------------------------------------
class InfluxWriter:
    """Sends batches in order; spools what cannot be sent; counts everything."""

    BACKOFF_BASE_S: Final = 0.25
    BACKOFF_MAX_S: Final = 5.0

    def __init__(self, settings: InfluxSettings, transport: Transport | None = None) -> None:
        self.settings = settings
        self._transport = transport or (
            V2Transport(settings) if settings.api == "v2" else V1Transport(settings)
        )
        self.spool: Spool = (
            DiskSpool(settings.spool_dir, settings.spool_bytes)
            if settings.spool_dir is not None
            else MemorySpool(settings.spool_bytes)
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logged: set[str] = set()
        self.sent_points = 0
        self.rejected_points = 0
        self._closed = False
        self._pauses = 0  # consecutive exports that found the server unreachable
        self._pause_until = 0.0

    @property
    def dropped_points(self) -> int:
        return self.rejected_points + self.spool.dropped_points

    def health(self) -> Iterable[tuple[str, int]]:
        return (("sent", self.sent_points), ("dropped", self.dropped_points),
                ("spooled", self.spool.points))  # fmt: skip

    def write(self, lines: Sequence[str]) -> bool:
        """Send ``lines`` after anything spooled; ``False`` when they were spooled or dropped."""
        if not lines:
            return True
        body = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            if self._closed or time.monotonic() < self._pause_until:
                self.spool.add(body, len(lines))
                return False
            deadline = time.monotonic() + self.settings.export_deadline_s
            outcome = self._send(body, len(lines), deadline) if self._replay(deadline) else "retry"
            if outcome == "retry":
                self.spool.add(body, len(lines))
                self._pause()
                return False
            self._pauses = 0
            return outcome == "sent"

    def _replay(self, deadline: float) -> bool:
        """Send spooled batches, oldest first; ``False`` if the server still cannot take them."""
        while (waiting := self.spool.oldest()) is not None:
            if self._send(*waiting, deadline) == "retry":
                return False
            self.spool.remove_oldest()
        return True

    def _pause(self) -> None:
        """Leave the server alone for a while after an export found it unreachable."""
        self._pauses += 1
        longest = min(self.BACKOFF_MAX_S, self.BACKOFF_BASE_S * 2**self._pauses)
        self._pause_until = time.monotonic() + random.uniform(longest / 2, longest)

    def _send(self, body: bytes, points: int, deadline: float) -> str:
        attempt = 0
        while True:
            try:
                self._transport.write(body)
            except PermanentError as error:
                self.rejected_points += points
                self._log_once(str(error))
                return "dropped"
            except RetryableError as error:
                delay = min(self.BACKOFF_MAX_S, self.BACKOFF_BASE_S * 2**attempt)
                delay = (
                    error.retry_after if error.retry_after is not None else random.uniform(0, delay)
                )
                attempt += 1
                if (
                    isinstance(error, UnreachableError)  # the pause that follows is its backoff
                    or self._stop.is_set()
                    or time.monotonic() + delay > deadline
                ):
                    self._log_once(f"{error}; batches are spooled and replayed when it answers")
                    return "retry"
                self._stop.wait(delay)
                continue
            self.sent_points += points
            if self._logged:
                _log.info("tts-otel: InfluxDB at %s accepts writes again", self.settings.url)
                self._logged.clear()
            return "sent"

    def _log_once(self, message: str) -> None:
        cause = message.split(":")[0]
        if cause not in self._logged:
            self._logged.add(cause)
            _log.warning("tts-otel: InfluxDB write to %s failed: %s", self.settings.target, message)

    def close(self) -> None:
        """Interrupt waits, try once more to deliver the spool, release the connection.

        What still cannot be sent stays spooled (on disk if configured); each
        batch gets one attempt, so a dead server delays this by one timeout.
        """
        self._stop.set()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._replay(time.monotonic() + self.settings.export_deadline_s)
                self._transport.close()


class InfluxDBSpanExporter(SpanExporter):
    """Spans to InfluxDB. No arguments: ``TTS_OTEL_INFLUXDB_*`` (the SDK entry point does that).

    A ``writer`` passed in belongs to the caller, who closes it.
    """

    def __init__(
        self, settings: InfluxSettings | None = None, *, writer: InfluxWriter | None = None
    ) -> None:
        self._owns_writer = writer is None
        self._writer = writer or InfluxWriter(settings or influx_settings())

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = list(span_lines(spans, self._writer.settings.span_dimensions))
        ok = self._writer.write(lines)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._owns_writer:
            self._writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class InfluxDBMetricExporter(MetricExporter):
    """Metrics to InfluxDB (telegraf-prometheus-v1). No arguments: ``TTS_OTEL_INFLUXDB_*``.

    A ``writer`` passed in belongs to the caller, who closes it.
    """

    def __init__(
        self, settings: InfluxSettings | None = None, *, writer: InfluxWriter | None = None
    ) -> None:
        super().__init__()
        self._owns_writer = writer is None
        self._writer = writer or InfluxWriter(settings or influx_settings())

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        ok = self._writer.write(list(metric_lines(metrics_data)))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._owns_writer:
            self._writer.close()


def influxdb_exporter(_settings: Settings) -> ExporterParts:
    """The ``influxdb`` exporter name: one writer for spans and metrics, closed after both
    providers have made their last export."""
    settings = influx_settings()
    writer = InfluxWriter(settings)
    return ExporterParts(
        span_exporter=InfluxDBSpanExporter(writer=writer),
        metric_reader=PeriodicExportingMetricReader(InfluxDBMetricExporter(writer=writer)),
        where=f"influxdb: {settings.target}",
        close=writer.close,
        health=("influxdb", writer.health),
    )
