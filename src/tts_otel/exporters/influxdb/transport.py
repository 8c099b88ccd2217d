"""One HTTP write to InfluxDB, and what its answer means: sent, retry later, or refused.

Only connection-type failures (nothing listens, nothing answers in time, TLS)
count as "unreachable" and keep a batch for later; anything else that goes
wrong is permanent for that batch. A "partial write" answer means the server
stored the rest of the batch: it is reported with the number it dropped.
Credentials never appear in errors.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final

from tts_otel._fork import reset_after_fork
from tts_otel.exporters.delivery import (
    PartialWriteError,
    PermanentError,
    RetryableError,
    Transport,
    UnreachableError,
)
from tts_otel.exporters.influxdb.settings import InfluxSettings

# The delivery's answers, under the names they had here.
__all__ = [
    "PartialWriteError",
    "PermanentError",
    "RetryableError",
    "Transport",
    "UnreachableError",
    "V1Transport",
    "V2Transport",
    "classify",
    "dropped_by_partial_write",
]


def authorization(settings: InfluxSettings) -> str | None:
    """The Authorization header: ``Token`` for v2, ``Basic`` for v1 with a user, else none."""
    if settings.api == "v2":
        return f"Token {settings.token}"
    if settings.username:
        secret = f"{settings.username}:{settings.password}".encode()
        return "Basic " + base64.b64encode(secret).decode()
    return None


def tls_context(settings: InfluxSettings) -> ssl.SSLContext | None:
    """``None`` (the default, verifying context) unless verification is switched off."""
    return None if settings.verify_tls else ssl._create_unverified_context()


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# 1.x and 2.8: "partial write: <reason> dropped=N", where a line that does not
# parse is listed (1.x) as "unable to parse '<line>': ..." and not in N; some 2.x
# answers: "partial write error (N written): ...".
_DROPPED = re.compile(r"dropped=(\d+)")
_WRITTEN = re.compile(r"partial write error \((\d+) written\)")


def dropped_by_partial_write(message: str, points: int) -> int:
    """How many of ``points`` a partial-write answer says were not stored (at least one)."""
    written = _WRITTEN.search(message)
    if written is not None:
        dropped = points - int(written[1])
    else:
        found = _DROPPED.search(message)
        dropped = (int(found[1]) if found else 0) + message.count("unable to parse '")
    return min(points, max(dropped, 1))


def classify(status: int, message: str, headers: Mapping[str, str] | None) -> Exception:
    if status == 429 or status >= 500:
        return RetryableError(f"HTTP {status}: {message}", _retry_after(headers))
    # 1.x answers a partial write with 400, InfluxDB 2.x (seen on 2.8.0) with 422.
    if status in (400, 422) and "partial write" in message:
        return PartialWriteError(message, 0)  # the writer counts, knowing the batch's size
    hint = {
        401: "authorization failed: check the username and password (v1) or the token (v2)",
        403: "permission denied: the user or token may not write here",
        404: "not found: check the database (v1) or org and bucket (v2)",
    }.get(status, "the server rejected the data")
    return PermanentError(f"HTTP {status}, {hint}: {message.strip()[:300]}")


class V1Transport:
    """``POST /write?db=&rp=&precision=ns`` with Basic auth: InfluxDB 1.x, and 2.x's v1 API.

    One connection, kept between writes as influxdb-client keeps v2's: a new one
    per batch cost a TCP (and TLS) handshake every export. A kept connection the
    server has closed meanwhile is replaced once, at once. ``HTTP(S)_PROXY`` and
    ``NO_PROXY`` apply, as they did through urllib.
    """

    def __init__(self, settings: InfluxSettings) -> None:
        query = {"db": settings.database, "precision": "ns"}
        if settings.retention_policy:
            query["rp"] = settings.retention_policy
        url = f"{settings.url}/write?{urllib.parse.urlencode(query)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        header = authorization(settings)
        if header is not None:
            self._headers["Authorization"] = header
        self._gzip = settings.gzip
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._open, self._target, proxy_headers = _connection(
            url, settings.timeout_s, tls_context(settings)
        )
        self._headers.update(proxy_headers)
        self._connection: http.client.HTTPConnection | None = None
        # A child must not write on its parent's socket.
        reset_after_fork(self, V1Transport._forget)

    def write(self, body: bytes) -> None:
        data = gzip.compress(body, compresslevel=1) if self._gzip else body
        kept = self._connection is not None
        try:
            try:
                status, answer, headers = self._exchange(data)
            except _STALE:
                if not kept:
                    raise
                status, answer, headers = self._exchange(data)  # on a new connection
        except OSError as error:
            raise UnreachableError(f"cannot reach InfluxDB: {error}") from None
        if not 200 <= status < 300:
            raise classify(status, answer.decode("utf-8", "replace"), headers)

    def _exchange(self, data: bytes) -> tuple[int, bytes, dict[str, str]]:
        if self._connection is None:
            self._connection = self._open()
        try:
            self._connection.request("POST", self._target, body=data, headers=self._headers)
            response = self._connection.getresponse()
            answer = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, answer, dict(response.getheaders())

    def _forget(self) -> None:
        self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# A kept connection the server closed while it was idle fails with one of these
# before any answer: the batch was not taken, and a new connection may send it.
_STALE: Final = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _connection(
    url: str, timeout: float, tls: ssl.SSLContext | None
) -> tuple[Callable[[], http.client.HTTPConnection], str, dict[str, str]]:
    """What urllib would do for ``url``, proxies included: (a function that opens a
    connection, the request target, headers to add to each request)."""
    parts = urllib.parse.urlsplit(url)
    target = urllib.parse.urlunsplit(parts._replace(scheme="", netloc=""))
    proxy = None
    if not urllib.request.proxy_bypass(parts.netloc):
        proxy = urllib.request.getproxies().get(parts.scheme)
    via, tunnel, headers = parts, False, {}
    if proxy is not None:
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        tunnel, headers = parts.scheme == "https", _proxy_authorization(via)
        if not tunnel:  # a plain HTTP proxy takes the whole URL, and its credentials
            target = url
    secure = parts.scheme == "https" if proxy is None or tunnel else via.scheme == "https"

    def open_connection() -> http.client.HTTPConnection:
        host, port = via.hostname or "", via.port
        connection = (
            http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
            if secure
            else http.client.HTTPConnection(host, port, timeout=timeout)
        )
        if tunnel:
            connection.set_tunnel(parts.hostname or "", parts.port, headers)
        return connection

    return open_connection, target, {} if tunnel else headers


def _proxy_authorization(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if not proxy.username:
        return {}
    secret = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


class V2Transport:
    """``POST /api/v2/write`` through influxdb-client's synchronous write API (no thread)."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        # retries=False: this exporter retries itself, within its own deadline.
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.token,
            org=settings.org,
            enable_gzip=settings.gzip,
            verify_ssl=settings.verify_tls,
            timeout=int(settings.timeout_s * 1000),
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket, self._org = settings.bucket, settings.org

    def write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as ConnectionTrouble

        try:
            precision: Any = WritePrecision.NS  # the enum's stub says str
            self._api.write(self._bucket, self._org, body, write_precision=precision)
        except ApiException as error:
            message = (
                error.body.decode("utf-8", "replace")
                if isinstance(error.body, bytes)
                else str(error.body)
            )
            raise classify(int(error.status or 0), message, dict(error.headers or {})) from None
        except (ConnectionTrouble, OSError) as error:
            # urllib3's errors (refused, timed out, TLS) and the OS's: the server may come back.
            raise UnreachableError(f"cannot reach InfluxDB: {type(error).__name__}") from None
        except Exception as error:
            # Anything else is a fault on this side; retrying or spooling would repeat it.
            raise PermanentError(
                f"influxdb-client failed: {type(error).__name__}: {str(error)[:200]}"
            ) from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
