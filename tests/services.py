"""Real servers for tests: started on free loopback ports, stopped after.

The binaries come from Debian packages that `make test` installs; a missing
one fails the test with that instruction rather than skipping it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        binary("prometheus"), f"--config.file={config_file}", f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(command, tmp / "prometheus.log", f"{url}/-/ready"):
        yield url


def query(base_url: str, promql: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    return list(answer["data"]["result"])
