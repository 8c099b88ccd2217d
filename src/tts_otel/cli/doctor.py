"""``tts-otel doctor``: is the configured InfluxDB ready for tts-otel? One line per check."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tts_otel.exporters.influxdb.settings import InfluxSettings
from tts_otel.exporters.influxdb.transport import (
    PermanentError,
    RetryableError,
    V1Transport,
    V2Transport,
    authorization,
    tls_context,
)
from tts_otel.exporters.influxdb.writer import SPAN_STORAGE_FIX


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # works now, but will not for long: shown, and the run still passes

    def render(self) -> str:
        status = "warn" if self.warning else "ok  " if self.ok else "FAIL"
        text = f"{status} {self.name:<14} {self.detail}"
        return text if self.ok and not self.warning else f"{text}\n     fix: {self.fix}"


def _get(
    settings: InfluxSettings, path: str, query: dict[str, str]
) -> tuple[int, Any, Mapping[str, str]]:
    """Status, JSON body and headers of a GET; raises for no answer at all."""
    request = urllib.request.Request(f"{settings.url}{path}?{urllib.parse.urlencode(query)}")
    header = authorization(settings)
    if header is not None:
        request.add_header("Authorization", header)
    context = tls_context(settings)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s, context=context) as answer:
            body = answer.read()
            return answer.status, json.loads(body) if body else None, dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, None, dict(error.headers)


def _unreachable(settings: InfluxSettings, error: Exception) -> Check:
    reason = getattr(error, "reason", error)
    detail = f"{settings.url}: {reason}"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return Check(
            "reachable",
            False,
            detail,
            "the server's TLS certificate is not trusted "
            "here: point SSL_CERT_FILE at the CA bundle that signed it (or add that CA "
            "to the system's store); TTS_OTEL_INFLUXDB_VERIFY_TLS=false only for "
            "testing",
        )
    if isinstance(reason, ssl.SSLError):
        return Check(
            "reachable",
            False,
            detail,
            "TLS failed: check https:// against the "
            "server's [http] https-enabled setting and its certificate",
        )
    return Check("reachable", False, detail, "start InfluxDB, or point TTS_OTEL_INFLUXDB_URL at it")


def run_checks(settings: InfluxSettings) -> Iterator[Check]:
    """The checks in order; a failed one ends the run (the next ones would fail for its reason)."""
    try:
        status, _, headers = _get(settings, "/ping", {})
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        yield _unreachable(settings, error)
        return
    yield Check(
        "reachable",
        status == 204,
        f"{settings.url} answers /ping ({status})",
        "is this InfluxDB? /ping should answer 204",
    )
    if status != 204:
        return
    version = headers.get("X-Influxdb-Version", "")
    for check in (_authenticated, _database):
        result = check(settings, version)
        yield result
        if not result.ok:
            return
    result = _test_write(settings)
    yield result
    if result.ok and settings.api == "v1" and version.startswith("1."):
        yield _span_storage(settings, version)


def _buckets(settings: InfluxSettings, version: str) -> bool:
    """Whether the server has /api/v2/buckets for the v2 settings. InfluxDB 1.8 takes v2
    writes (bucket "db/rp", token "user:password") without it: its /query answers."""
    return settings.api == "v2" and not version.startswith("1.")


def _authenticated(settings: InfluxSettings, version: str) -> Check:
    if _buckets(settings, version):
        # Any bucket of the org: asked by name, 2.x answers 404 for a missing bucket,
        # which is the next check's finding, not a bad token.
        status, _, _ = _get(settings, "/api/v2/buckets", {"org": settings.org, "limit": "1"})
        who, fix = "token", "check TTS_OTEL_INFLUXDB_TOKEN and TTS_OTEL_INFLUXDB_ORG"
    elif settings.api == "v2":  # 1.8 takes the token on /query too
        status, _, _ = _get(settings, "/query", {"q": "SHOW DATABASES"})
        who, fix = "token", "check TTS_OTEL_INFLUXDB_TOKEN (on InfluxDB 1.8: user:password)"
    else:
        status, _, _ = _get(settings, "/query", {"q": "SHOW DATABASES"})
        who, fix = (
            f"user {settings.username or '(none)'}",
            ("check TTS_OTEL_INFLUXDB_USERNAME and TTS_OTEL_INFLUXDB_PASSWORD"),
        )
    return Check("authenticated", status == 200, f"{who}: HTTP {status}", fix)


def _database(settings: InfluxSettings, version: str) -> Check:
    if _buckets(settings, version):
        _, body, _ = _get(
            settings, "/api/v2/buckets", {"org": settings.org, "name": settings.bucket}
        )
        exists = bool(body and body.get("buckets"))
        where = f"bucket {settings.bucket} in org {settings.org}"
        fix = f"create the bucket: influx bucket create -n {settings.bucket} -o {settings.org}"
    else:
        # On 1.8 a v2 bucket is "database/retention-policy".
        database = settings.bucket.partition("/")[0] if settings.api == "v2" else settings.database
        _, body, _ = _get(settings, "/query", {"q": "SHOW DATABASES"})
        series = (body or {}).get("results", [{}])[0].get("series", [{}])
        names = {row[0] for row in series[0].get("values", [])} if series else set()
        exists = database in names
        where = f"database {database}"
        fix = f"create it: influx -execute 'CREATE DATABASE \"{database}\"'"
        if not version.startswith("1."):  # 2.x's InfluxQL reads buckets through DBRP mappings
            fix = (
                f"map it to a bucket: influx v1 dbrp create --db {database} --rp autogen "
                "--bucket-id BUCKET_ID"
            )
    return Check("database", exists, where + (" exists" if exists else " is missing"), fix)


def _test_write(settings: InfluxSettings) -> Check:
    transport = V2Transport(settings) if settings.api == "v2" else V1Transport(settings)
    try:
        transport.write(f"tts_otel_doctor ok=true {time.time_ns()}\n".encode())
        return Check("test write", True, "one point written to measurement tts_otel_doctor")
    except (PermanentError, RetryableError) as error:
        return Check(
            "test write", False, str(error), "grant the user write access, or see the message"
        )
    finally:
        transport.close()


def _span_storage(settings: InfluxSettings, version: str) -> Check:
    """InfluxDB 1.x's series limits, read from SHOW DIAGNOSTICS (admin only)."""
    try:
        _, body, _ = _get(settings, "/query", {"q": "SHOW DIAGNOSTICS"})
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        body = None
    limits = {}
    for series in ((body or {}).get("results") or [{}])[0].get("series", []):
        if series.get("name") == "config-data":
            limits = dict(zip(series["columns"], series["values"][0], strict=False))
    found = {
        key: limits[key]
        for key in ("max-values-per-tag", "max-series-per-database")
        if key in limits
    }
    if found and not any(found.values()):
        return Check("span storage", True, f"InfluxDB {version}: no series limits")
    detail = (
        ", ".join(f"{key} = {value}" for key, value in found.items())
        if found
        else "limits unknown (SHOW DIAGNOSTICS needs an admin user)"
    )
    return Check(
        "span storage",
        True,
        f"InfluxDB {version}: {detail}; span writes stop at that many spans",
        SPAN_STORAGE_FIX,
        warning=True,
    )
