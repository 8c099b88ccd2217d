"""``tts-otel doctor``: is the configured InfluxDB ready for tts-otel? One line per check."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tts_otel.exporters.influxdb import (
    InfluxSettings,
    PermanentError,
    RetryableError,
    V1Transport,
    V2Transport,
    authorization,
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def render(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        text = f"{status} {self.name:<14} {self.detail}"
        return text if self.ok else f"{text}\n     fix: {self.fix}"


def _get(settings: InfluxSettings, path: str, query: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(f"{settings.url}{path}?{urllib.parse.urlencode(query)}")
    header = authorization(settings)
    if header is not None:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        return error.code, None


def run_checks(settings: InfluxSettings) -> Iterator[Check]:
    """The checks in order; a failed one ends the run (the next ones would fail for its reason)."""
    try:
        status, _ = _get(settings, "/ping", {})
    except (urllib.error.URLError, OSError) as error:
        yield Check("reachable", False, f"{settings.url}: {getattr(error, 'reason', error)}",
                    "start InfluxDB, or point TTS_OTEL_INFLUXDB_URL at it")  # fmt: skip
        return
    yield Check("reachable", status == 204, f"{settings.url} answers /ping ({status})",
                "is this InfluxDB? /ping should answer 204")  # fmt: skip
    if status != 204:
        return

    if settings.api == "v2":
        status, body = _get(
            settings, "/api/v2/buckets", {"org": settings.org, "name": settings.bucket}
        )
        who, fix = "token", "check TTS_OTEL_INFLUXDB_TOKEN and TTS_OTEL_INFLUXDB_ORG"
    else:
        status, body = _get(settings, "/query", {"q": "SHOW DATABASES"})
        who, fix = (
            f"user {settings.username or '(none)'}",
            ("check TTS_OTEL_INFLUXDB_USERNAME and TTS_OTEL_INFLUXDB_PASSWORD"),
        )
    authorized = status == 200
    yield Check("authenticated", authorized, f"{who}: HTTP {status}", fix)
    if not authorized:
        return

    if settings.api == "v2":
        exists = bool(body and body.get("buckets"))
        where = f"bucket {settings.bucket} in org {settings.org}"
        fix = f"create the bucket: influx bucket create -n {settings.bucket} -o {settings.org}"
    else:
        series = (body or {}).get("results", [{}])[0].get("series", [{}])
        names = {row[0] for row in series[0].get("values", [])} if series else set()
        exists = settings.database in names
        where = f"database {settings.database}"
        fix = f"create it: influx -execute 'CREATE DATABASE \"{settings.database}\"'"
    yield Check("database", exists, where + (" exists" if exists else " is missing"), fix)
    if not exists:
        return

    transport = V2Transport(settings) if settings.api == "v2" else V1Transport(settings)
    try:
        transport.write(f"tts_otel_doctor ok=true {time.time_ns()}\n".encode())
        yield Check("test write", True, "one point written to measurement tts_otel_doctor")
    except (PermanentError, RetryableError) as error:
        yield Check(
            "test write", False, str(error), "grant the user write access, or see the message"
        )
    finally:
        transport.close()
