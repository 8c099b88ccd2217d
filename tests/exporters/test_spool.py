"""The disk spool shared by several writers, and on a disk that refuses writes.

Several workers (and the span and metric exporters of one process) share one
configured spool directory: every batch must be delivered exactly once across
restarts, whoever wrote it and whoever replays it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.exporters.test_influx_writer import SwitchableTransport
from tts_otel.exporters.influxdb.settings import DEFAULT_SPOOL_BYTES, influx_settings
from tts_otel.exporters.influxdb.writer import InfluxWriter
from tts_otel.exporters.spool import DiskSpool


def _writer(spool: Path, transport: SwitchableTransport) -> InfluxWriter:
    settings = influx_settings(environ={}, spool_dir=spool, export_deadline_s=0.05)
    return InfluxWriter(settings, transport)


def _received(*transports: SwitchableTransport) -> list[bytes]:
    return [line for t in transports for body in t.received for line in body.splitlines()]


def test_two_writers_in_one_process_replay_each_batch_once_after_a_restart(
    tmp_path: Path,
) -> None:
    # Before the restart: the span and the metric writer both spool while the server is away.
    down_spans, down_metrics = SwitchableTransport(), SwitchableTransport()
    spans, metrics = _writer(tmp_path, down_spans), _writer(tmp_path, down_metrics)
    for index in range(20):
        spans.write([f"spans f={index}i {index}"])
        metrics.write([f"metric f={index}i {index}"])
    spans.close()
    metrics.close()

    # After the restart both find the same files; the server is back.
    up_spans, up_metrics = SwitchableTransport(), SwitchableTransport()
    up_spans.up = up_metrics.up = True
    spans, metrics = _writer(tmp_path, up_spans), _writer(tmp_path, up_metrics)
    threads = [
        threading.Thread(
            target=lambda w=w, n=n: [w.write([f"new{n} f={i}i {i}"]) for i in range(20)]
        )
        for n, w in enumerate((spans, metrics))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans.close()
    metrics.close()

    lines = _received(up_spans, up_metrics)
    assert len(lines) == len(set(lines)) == 80  # 40 spooled, 40 new: each exactly once
    assert spans.sent_points + metrics.sent_points == 80
    assert spans.dropped_points == metrics.dropped_points == 0
    assert not list(tmp_path.iterdir())


_SPOOLER = """
import sys
from pathlib import Path
from tts_otel.exporters.spool import DiskSpool
spool = DiskSpool(Path(sys.argv[1]), 1 << 30)
for index in range(int(sys.argv[3])):
    spool.add(f"{sys.argv[2]} f={index}i {index}\\n".encode(), 1)
"""


def test_two_processes_spool_into_one_directory_without_overwriting(tmp_path: Path) -> None:
    batches = 200
    workers = [
        subprocess.Popen([sys.executable, "-c", _SPOOLER, str(tmp_path), name, str(batches)])
        for name in ("a", "b", "c")
    ]
    assert [worker.wait(60) for worker in workers] == [0, 0, 0]

    # Then four writers replay the directory at once: each batch is sent by exactly one.
    sent: list[bytes] = []
    lock = threading.Lock()

    def send(body: bytes, points: int) -> bool:
        with lock:
            sent.append(body)
        return True

    readers = [DiskSpool(tmp_path, 1 << 30) for _ in range(4)]
    threads = [threading.Thread(target=reader.replay, args=(send,)) for reader in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == len(set(sent)) == 3 * batches
    assert not list(tmp_path.iterdir())


def test_a_batch_refused_during_replay_stays_for_the_next_one(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1 << 20)
    for index in range(3):
        spool.add(f"m f={index}i {index}\n".encode(), 1)
    assert not spool.replay(lambda body, points: False)
    assert spool.held()[0] == 3
    seen: list[bytes] = []
    assert spool.replay(lambda body, points: not seen.append(body))  # type: ignore[func-returns-value]
    assert seen == [b"m f=0i 0\n", b"m f=1i 1\n", b"m f=2i 2\n"]  # oldest first
    assert spool.held()[0] == 0


def test_the_bound_holds_for_the_whole_directory_and_overflow_is_counted(tmp_path: Path) -> None:
    first, second = DiskSpool(tmp_path, 100), DiskSpool(tmp_path, 100)
    for index in range(10):
        (first if index % 2 else second).add(b"x" * 30, 2)
    assert sum(path.stat().st_size for path in tmp_path.iterdir()) <= 100
    assert first.dropped_points + second.dropped_points == 2 * (10 - 3)
    # Each writer reports the directory's content, the quantity the bound holds.
    assert first.held() == second.held() == (6, 90)


_FULL_DISK = """
import json, logging, resource, signal, sys
from pathlib import Path
from tests.exporters.test_influx_writer import SwitchableTransport
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.exporters.influxdb.writer import InfluxWriter

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append({"level": record.levelname, "message": record.getMessage(),
                        "traceback": record.exc_info is not None})
logging.getLogger("tts_otel").addHandler(Keep())
logging.getLogger("tts_otel").setLevel(logging.INFO)

settings = influx_settings(environ={}, spool_dir=sys.argv[1], export_deadline_s=0.05)
writer = InfluxWriter(settings, SwitchableTransport())
# Files above 4 KiB cannot be written, as on a full disk: EFBIG instead of ENOSPC.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
results = [writer.write(["m,t=x f=%di %d" % (i, i)] * 500) for i in range(5)]
writer.close()
print(json.dumps({"results": results, "health": dict(writer.health()), "records": records}))
"""


def test_a_disk_that_refuses_writes_costs_counted_points_one_log_and_no_fragments(
    tmp_path: Path,
) -> None:
    root = Path(__file__).parent.parent.parent
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["results"] == [False] * 5
    assert report["health"] == {
        "sent": 0,
        "dropped": 2500,
        "spooled": 0,
        "spool_bytes": 0,
        "spool_limit_bytes": DEFAULT_SPOOL_BYTES,
    }
    spool_logs = [r for r in report["records"] if "spool directory" in r["message"]]
    assert len(spool_logs) == 1, report["records"]
    assert not spool_logs[0]["traceback"]
    assert list(tmp_path.iterdir()) == []  # no .tmp fragments left filling the disk


def test_a_spool_dir_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    from tts_otel.errors import ConfigurationError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="TTS_OTEL_INFLUXDB_SPOOL_DIR"):
        DiskSpool(blocker / "spool", 1 << 20)


def test_fragments_of_a_dead_writer_are_removed(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001-00000001-1-dead-1.lp.tmp").write_bytes(b"half")
    DiskSpool(tmp_path, 1 << 20)
    assert list(tmp_path.iterdir()) == []


def test_lost_files_are_tolerated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = DiskSpool(tmp_path, 1 << 20)
    spool.add(b"m f=1i 1\n", 1)
    for path in tmp_path.iterdir():
        path.unlink()  # another writer (or an operator) took it
    with caplog.at_level(logging.WARNING):
        assert spool.replay(lambda body, points: True)
    assert spool.held()[0] == 0
