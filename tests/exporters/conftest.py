"""What the InfluxDB exporter's tests share: a real InfluxDB 1.x with the database
``tests.services.DATABASE``, on a free loopback port, started per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import DATABASE, InfluxServer, influxdb


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InfluxServer]:
    with influxdb(tmp_path / "influx") as running:
        running.create_database(DATABASE)
        yield running
