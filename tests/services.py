"""Real servers for tests: started on free loopback ports, stopped after.

The binaries come from Debian packages that `make test` installs; a missing
one fails the test with that instruction rather than skipping it.
"""

from __future__ import annotations

import base64
import calendar
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it from Debian")
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports.

    The probes stay open until all are chosen: probing one at a time can hand
    out the same port twice (seen here: influxd's RPC and HTTP ports collided).
    """
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    return free_ports(1)[0]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


@contextmanager
def serving(synthesize: Callable[[str], object], texts: Sequence[str]) -> Iterator[None]:
    """Requests in a background thread, cycling through ``texts``, until the block ends."""
    stop = threading.Event()

    def serve() -> None:
        index = 0
        while not stop.is_set():
            synthesize(texts[index % len(texts)])
            index += 1

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(30)


@contextmanager
def running(
    command: Sequence[str], log: Path, ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            if ready_url is not None:

                def ready() -> bool:
                    if process.poll() is not None:
                        pytest.fail(f"{command[0]} exited: {log.read_text()[-2000:]}")
                    with urllib.request.urlopen(ready_url, timeout=2) as response:
                        return bool(response.status == 200)

                wait_for(ready, 30, f"{command[0]} at {ready_url}")
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def prometheus(tmp: Path, config: dict[str, Any]) -> Iterator[str]:
    """A Prometheus server with ``config``; yields its base URL."""
    port = free_port()
    config_file = tmp / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    command = [
        binary("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, tmp / "prometheus.log", f"{url}/-/ready"):
        yield url


def query(base_url: str, promql: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    return list(answer["data"]["result"])


# The database the tests write to and read from.
DATABASE = "tts"


class ServerProcess:
    """A server process the tests start, and stop in the ways a test needs."""

    _process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; SIGKILL if it has not exited in 20 s."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def hang(self) -> None:
        """Stop the process (SIGSTOP): connections are accepted by the kernel, never answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)


class InfluxServer(ServerProcess):
    """Debian's influxd 1.x on loopback with authentication; can be killed and started again."""

    USER = "admin"
    PASSWORD = "s3cret-admin"

    def __init__(
        self, tmp: Path, config: Mapping[str, str] | None = None, influxd: str | None = None
    ) -> None:
        """``config``: server settings to change, e.g. ``{"max-values-per-tag": "50"}``.

        ``influxd``: the binary to run; Debian's (1.6.7) on the PATH by default.
        """
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.influxd = influxd or binary("influxd")
        self.port, rpc_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        template = subprocess.run([self.influxd, "config"], capture_output=True, text=True).stdout
        replacements = {
            r'^bind-address = ".*"$': f'bind-address = "127.0.0.1:{rpc_port}"',
            r'^  dir = "/var/lib/influxdb/meta"$': f'  dir = "{tmp}/meta"',
            r'^  dir = "/var/lib/influxdb/data"$': f'  dir = "{tmp}/data"',
            r'^  wal-dir = ".*"$': f'  wal-dir = "{tmp}/wal"',
            r"^  store-enabled = true$": "  store-enabled = false",
            r'^  bind-address = ":8086"$': f'  bind-address = "127.0.0.1:{self.port}"',
            r"^  auth-enabled = false$": "  auth-enabled = true",
        }
        for key, setting in (config or {}).items():
            replacements[rf"^  {re.escape(key)} = .*$"] = f"  {key} = {setting}"
        for pattern, value in replacements.items():
            template, count = re.subn(pattern, value, template, flags=re.M)
            assert count == 1, pattern
        self.config = tmp / "influxdb.conf"
        self.config.write_text(template)
        self._admin_created = False

    def start(self) -> None:
        log = (self.tmp / "influxd.log").open("ab")
        self._process = subprocess.Popen(
            [self.influxd, "-config", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for(self._pings, 30, "influxd to answer /ping")
        if not self._admin_created:
            # On a fresh server with no users only this statement is allowed.
            self._post_query(
                f"CREATE USER {self.USER} WITH PASSWORD '{self.PASSWORD}' WITH ALL PRIVILEGES",
                auth=False,
            )
            self._admin_created = True

    def _pings(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
            return bool(response.status == 204)

    def _post_query(self, statement: str, auth: bool = True) -> Any:
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode({"q": statement}).encode()
        )
        if auth:
            secret = base64.b64encode(f"{self.USER}:{self.PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {secret}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def create_database(self, name: str) -> None:
        self._post_query(f'CREATE DATABASE "{name}"')

    def query(self, statement: str, database: str) -> list[dict[str, Any]]:
        """Rows of every series the statement returns, as dicts (tags included)."""
        params = {"q": statement, "db": database, "u": self.USER, "p": self.PASSWORD, "epoch": "ns"}
        return influxql_rows(get_json(f"{self.url}/query?" + urllib.parse.urlencode(params)))


def influxql_rows(answer: Any) -> list[dict[str, Any]]:
    """The rows of an InfluxQL answer's every series, as dicts (tags included)."""
    rows = []
    for result in answer["results"]:
        if "error" in result:
            raise ValueError(result["error"])
        for series in result.get("series", []):
            for values in series["values"]:
                rows.append(
                    {**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))}
                )
    return rows


@contextmanager
def influxdb(tmp: Path, config: Mapping[str, str] | None = None) -> Iterator[InfluxServer]:
    server = InfluxServer(tmp, config)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def go_built(script: str, what: str, make_target: str, *flags: str) -> str:
    """The binary a build script caches under .cache/ (built on first use; prints its path last)."""
    root = Path(__file__).parent.parent
    done = subprocess.run(
        ["bash", str(root / script), *flags], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0:
        trouble = "is not built" if "--check" in flags else "failed to build"
        pytest.fail(f"{what} {trouble} (run `make {make_target}`):\n{done.stderr[-3000:]}")
    return str(root / done.stdout.strip().splitlines()[-1])


def influxd18_binary() -> str:
    """influxd 1.8.10 from Go modules (scripts/build_influxd.sh, cached in .cache/)."""
    return go_built("scripts/build_influxd.sh", "influxd 1.8.10", "influxd18")


class Influx18Server(InfluxServer):
    """influxd 1.8.10 on loopback with auth and Flux on: both the v1 and the v2 API.

    Everything :class:`InfluxServer` has (``url``, ``USER``/``PASSWORD``,
    ``create_database``, InfluxQL ``query``, ``kill``/``start``/``hang``), plus:

    - ``token``: ``"admin:s3cret-admin"``, what 1.8 takes as a v2 token
      (``Authorization: Token user:password``);
    - ``ORG``: ``"-"`` (1.8 ignores the org; influxdb-client needs one);
    - ``bucket(database, rp="autogen")``: ``"database/rp"``, the v2 bucket name;
    - ``flux(query)``: run Flux on ``POST /api/v2/query``; rows as dicts.

    The v2 API writes only into databases that exist: ``create_database`` first.
    """

    ORG = "-"

    def __init__(self, tmp: Path, config: Mapping[str, str] | None = None) -> None:
        super().__init__(tmp, {"flux-enabled": "true", **(config or {})}, influxd18_binary())

    @property
    def token(self) -> str:
        return f"{self.USER}:{self.PASSWORD}"

    @staticmethod
    def bucket(database: str, retention_policy: str = "autogen") -> str:
        return f"{database}/{retention_policy}"

    def flux(self, query: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Rows of every table the Flux ``query`` returns: see :func:`run_flux`."""
        return run_flux(self.url, self.token, self.ORG, query, timeout)


def run_flux(url: str, token: str, org: str, query: str, timeout: float) -> list[dict[str, Any]]:
    """Rows of every table the Flux ``query`` returns, typed by its ``#datatype`` row.

    Each row is a dict of column -> value (``result`` and ``table`` included):
    ``long``/``unsignedLong`` -> int, ``double`` -> float, ``boolean`` -> bool,
    ``dateTime:RFC3339*`` -> int nanoseconds since the epoch, anything else -> str,
    an empty cell -> None. A Flux error raises ValueError with the server's message.
    """
    body = json.dumps(
        {"query": query, "type": "flux", "dialect": {"annotations": ["datatype"]}}
    ).encode()
    target = f"{url}/api/v2/query?" + urllib.parse.urlencode({"org": org})
    request = urllib.request.Request(target, data=body, method="POST")
    # JSON rather than the bare application/vnd.flux body: only the JSON form
    # carries the dialect, and without #datatype every value would be a string.
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/csv")
    request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        raise ValueError(f"Flux query failed ({error.code}): {error.read().decode()}") from None
    return parse_flux_csv(text)


def parse_flux_csv(text: str) -> list[dict[str, Any]]:
    """Flux's annotated CSV (tables separated by blank lines) as typed rows."""
    rows: list[dict[str, Any]] = []
    types: list[str] = []
    header: list[str] | None = None
    for record in csv.reader(io.StringIO(text)):
        if not any(record):
            types, header = [], None  # a blank line ends a table; the next brings its own header
        elif record[0] == "#datatype":
            types = record
        elif header is None:
            header = record
        elif header[1:] == ["error", "reference"]:
            # An error found while the response streams comes as a table of its own.
            raise ValueError(f"Flux error: {record[1]}")
        else:
            rows.append(
                {
                    name: _flux_value(types[index] if types else "string", cell)
                    for index, (name, cell) in enumerate(zip(header, record, strict=True))
                    if index > 0  # the annotation column
                }
            )
    return rows


def _flux_value(kind: str, cell: str) -> Any:
    if cell == "":
        return None
    if kind in ("long", "unsignedLong"):
        return int(cell)
    if kind == "double":
        return float(cell)
    if kind == "boolean":
        return cell == "true"
    if kind.startswith("dateTime"):
        return rfc3339_ns(cell)
    return cell


def rfc3339_ns(text: str) -> int:
    """``2025-08-12T10:00:00.123456789Z`` -> nanoseconds since the epoch, exactly."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


@contextmanager
def influxdb18(tmp: Path, config: Mapping[str, str] | None = None) -> Iterator[Influx18Server]:
    """A running :class:`Influx18Server` (built from Go modules on first use), killed after."""
    server = Influx18Server(tmp, config)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def influxdb2_binary() -> str:
    """InfluxDB OSS 2.8.0 from Go modules and crates (scripts/build_influxdb2.sh, in .cache/).

    Never built here: from empty caches it takes about ten minutes, which a test must not
    spend silently; a missing binary fails the test with the make target that builds it.
    """
    return go_built("scripts/build_influxdb2.sh", "InfluxDB 2.8.0", "influxdb2", "--check")


class Influx2Server(ServerProcess):
    """InfluxDB OSS 2.8.0 on a free loopback port with its default limits, set up over HTTP.

    The same surface as :class:`Influx18Server`, so a test can take either:

    - ``url``, ``ORG``, ``token`` (the operator token given at setup), ``bucket(database)``;
    - ``create_database(name)``: a bucket ``name`` and a DBRP mapping ``name``/``autogen``
      (the default) to it, so InfluxQL on v1 ``/query?db=name`` reads that bucket;
    - ``query(statement, database)``: InfluxQL through that mapping; ``flux(query)``;
    - ``kill``/``start``/``hang``/``resume``, and ``stop`` (SIGTERM, as a service manager).

    ``USER``/``PASSWORD`` are the onboarded user's; the v1 API takes the token instead.
    """

    USER = "admin"
    PASSWORD = "s3cret-admin"
    ORG = "tts-org"
    TOKEN = "tts-operator-token"
    INITIAL_BUCKET = "setup"  # setup insists on one; tests create their own

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.influxd = influxdb2_binary()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            self.influxd,
            f"--bolt-path={tmp / 'influxd.bolt'}",
            f"--engine-path={tmp / 'engine'}",
            f"--sqlite-path={tmp / 'influxd.sqlite'}",
            f"--http-bind-address=127.0.0.1:{self.port}",
            "--reporting-disabled",
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self.org_id = ""
        self._bucket_ids: dict[str, str] = {}

    @property
    def token(self) -> str:
        return self.TOKEN

    @staticmethod
    def bucket(database: str, retention_policy: str = "autogen") -> str:
        return database

    def start(self) -> None:
        log = (self.tmp / "influxd.log").open("ab")
        # cwd: influxd reads a config.{toml,yaml,json} from its working directory.
        self._process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp
        )
        wait_for(self._healthy, 30, "InfluxDB 2 to pass /health")
        if not self.org_id:
            answer = self._api(
                "POST",
                "/api/v2/setup",
                {
                    "username": self.USER,
                    "password": self.PASSWORD,
                    "org": self.ORG,
                    "bucket": self.INITIAL_BUCKET,
                    "token": self.TOKEN,
                },
                auth=False,
            )
            self.org_id = answer["org"]["id"]

    def _healthy(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            pytest.fail(f"influxd 2 exited: {(self.tmp / 'influxd.log').read_text()[-3000:]}")
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
            return bool(json.load(response)["status"] == "pass")

    def _api(self, method: str, path: str, body: object, auth: bool = True) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), method=method
        )
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Token {self.TOKEN}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise ValueError(f"{method} {path}: {error.code} {error.read().decode()}") from None

    def create_database(self, name: str) -> None:
        bucket = self._api("POST", "/api/v2/buckets", {"orgID": self.org_id, "name": name})
        self._bucket_ids[name] = bucket["id"]
        self._api(
            "POST",
            "/api/v2/dbrps",
            {
                "orgID": self.org_id,
                "bucketID": bucket["id"],
                "database": name,
                "retention_policy": "autogen",
                "default": True,
            },
        )

    def query(self, statement: str, database: str) -> list[dict[str, Any]]:
        """Rows of every series the InfluxQL statement returns, as dicts (tags included)."""
        params = {"q": statement, "db": database, "epoch": "ns"}
        request = urllib.request.Request(f"{self.url}/query?" + urllib.parse.urlencode(params))
        request.add_header("Authorization", f"Token {self.TOKEN}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return influxql_rows(json.load(response))

    def flux(self, query: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Rows of every table the Flux ``query`` returns: see :func:`run_flux`."""
        return run_flux(self.url, self.TOKEN, self.ORG, query, timeout)


@contextmanager
def influxdb2(tmp: Path) -> Iterator[Influx2Server]:
    """A running, set-up :class:`Influx2Server`, stopped (SIGTERM) after."""
    server = Influx2Server(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# What speaks the v2 API here: the real InfluxDB 2, and 1.8's compatibility layer.
V2Server = Influx18Server | Influx2Server
# What answers InfluxQL on /query (2.x through DBRP mappings).
InfluxQLServer = InfluxServer | Influx2Server


@contextmanager
def v2_server(tmp: Path, version: str) -> Iterator[V2Server]:
    """A running server of ``version`` (``"2.8"`` or ``"1.8"``) for the v2 API."""
    with influxdb2(tmp) if version == "2.8" else influxdb18(tmp) as server:
        yield server


def collector_binary() -> str:
    """Build (or find, cached by manifest hash) otelcol-tts with collector/build.sh."""
    return go_built("collector/build.sh", "the collector", "collector")


class Collector(ServerProcess):
    """otelcol-tts with a shipped config on free loopback ports; can be SIGKILLed and restarted."""

    def __init__(
        self,
        binary_path: str,
        config: Path,
        tmp: Path,
        influx: InfluxQLServer | None = None,  # None: a config that does not write to InfluxDB
        database: str = "",
    ) -> None:
        self.binary, self.config, self.tmp = binary_path, config, tmp
        self.grpc, self.http, self.prometheus, self.health, telemetry = free_ports(5)
        influx_env = (
            {}
            if influx is None
            else {
                "TTS_OTEL_INFLUXDB_URL": influx.url,
                "TTS_OTEL_INFLUXDB_DB": database,
                "TTS_OTEL_INFLUXDB_USERNAME": influx.USER,
                "TTS_OTEL_INFLUXDB_PASSWORD": influx.PASSWORD,
            }
        )
        self.env = {
            **os.environ,
            **influx_env,
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.prometheus}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}",
            "OTELCOL_TELEMETRY_PORT": str(telemetry),
            "OTELCOL_QUEUE_DIR": str(tmp / "queue"),
        }
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.tmp / "collector.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "--config", str(self.config)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def healthy() -> bool:
            if self._process is not None and self._process.poll() is not None:
                pytest.fail(f"collector exited: {(self.tmp / 'collector.log').read_text()[-3000:]}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/", timeout=2) as response:
                return bool(response.status == 200)

        wait_for(healthy, 60, "the collector's health check")


@contextmanager
def alertmanager(tmp: Path, config_file: Path) -> Iterator[str]:
    """Alertmanager with ``config_file``, clustering off; yields its base URL."""
    port = free_port()
    command = [
        binary("prometheus-alertmanager"),
        f"--config.file={config_file}",
        f"--storage.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, tmp / "alertmanager.log", f"{url}/-/ready"):
        yield url
