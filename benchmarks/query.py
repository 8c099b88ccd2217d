"""Reading spans back: ``tts-otel report --since`` and ``trace --slowest 10`` over 50,000 and
200,000 spans stored as request trees in a real influxd 1.8.10 with InfluxQL, and over
10,000 with InfluxQL and Flux (Flux on 1.8 does not finish 50,000 within 120 s here).

Each command runs in its own process; its wall time and peak RSS (VmHWM, read by the
command as it exits) are printed with spans/s. Peak memory should not grow with the span
count: the reader holds a chunk per query and the requests in flight, plus one float per
request and stage (8 bytes: 56 bytes a request with six stages).

Usage: python benchmarks/query.py [SPANS ...]   (default 50000 200000)
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tts_otel.exporters.influxdb.line_protocol import go_json, line
from tts_otel.exporters.influxdb.settings import DEFAULT_SPAN_DIMENSIONS, influx_settings
from tts_otel.exporters.influxdb.spans import SPANS
from tts_otel.exporters.influxdb.writer import InfluxWriter

# tests.services starts influxd on loopback, as the other benchmarks do.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MS = 10**6
SEGMENTS = 2
FLUX_SPANS = 10_000
SPANS_PER_REQUEST = 2 + 5 * SEGMENTS  # root, speaker embedding, 5 stage spans per segment


def request_lines(index: int, start: int, rng: random.Random) -> Iterator[str]:
    """One request tree in the collector's schema, as the exporters write it."""
    trace = f"{rng.getrandbits(128):032x}"
    kv_cache = index % 2 == 0
    config = {
        "service.name": "tts-bench",
        "tts.model.name": "glm-tts",
        "tts.model.version": "1.1" if index % 3 else "1.0",
        "tts.kv_cache": str(kv_cache).lower(),
        "tts.sample_rate": "24000" if index % 4 < 2 else "32000",
        "tts.streaming": "false",
        "tts.text.length_bin": ("short", "medium", "long")[index % 3],
    }
    root_id = f"{rng.getrandbits(64):016x}"
    cursor = start

    def span(name: str, stage: str | None, ms: float, parent: str, segment: int | None) -> str:
        nonlocal cursor
        span_id = f"{rng.getrandbits(64):016x}" if stage else root_id
        duration = int(ms * MS)
        tags = {**config, "trace_id": trace, "span_id": span_id}
        attributes: dict[str, object] = {"tts.gpu.memory.peak": 2**30} if not stage else {}
        if stage:
            tags["tts.stage"] = stage
        if segment is not None:
            attributes["tts.segment.index"] = segment
        fields: dict[str, str | int | float | bool] = {
            "span.name": name,
            "span.kind": "Internal",
            "parent_span_id": parent,
            "end_time_unix_nano": cursor + duration,
            "duration_nano": duration,
            "attributes": go_json(attributes),
        }
        begin = cursor
        if stage and "." not in stage:
            cursor += duration
        text = line(SPANS, tags, fields, begin)
        assert text is not None
        return text

    total = 0.0
    children: list[tuple[str, str, float, int | None]] = [
        ("tts.speaker_embedding", "speaker_embedding", rng.uniform(10, 20), None)
    ]
    for segment in range(SEGMENTS):
        llm = rng.lognormvariate(5.5 if kv_cache else 6.4, 0.3)
        flow, vocoder = rng.uniform(40, 60), rng.uniform(20, 40)
        children += [
            ("tts.text_normalization", "text_normalization", 0.5, segment),
            ("tts.acoustic", "acoustic", llm + flow, segment),
            ("tts.acoustic.llm", "acoustic.llm", llm, segment),
            ("tts.acoustic.flow", "acoustic.flow", flow, segment),
            ("tts.vocoder", "vocoder", vocoder, segment),
        ]
        total += 0.5 + llm + flow + vocoder
    total += children[0][2]
    yield span("tts.synthesize", None, total, "", None)
    for name, stage, ms, segment_index in children:
        yield span(name, stage, ms, root_id, segment_index)


def load(writer: InfluxWriter, spans: int) -> None:
    rng = random.Random(spans)
    requests = spans // SPANS_PER_REQUEST
    # Spread over the last 50 minutes, 8 requests in flight at a time.
    step = 50 * 60 * 10**9 // requests
    first = time.time_ns() - 50 * 60 * 10**9
    batch: list[str] = []
    for index in range(requests):
        batch.extend(request_lines(index, first + index * step, rng))
        if len(batch) >= 10_000:
            assert writer.write(batch), "influxd refused a batch"
            batch = []
    if batch:
        assert writer.write(batch), "influxd refused a batch"


def timed(argv: list[str], env: dict[str, str], server_pid: int) -> Timing | str:
    """One tts-otel command in a process of its own, or why it failed (the benchmark goes
    on: one slow path must not hide the others' figures)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_before, client_before = _cpu(server_pid), _children_cpu()
        start = time.perf_counter()
        process = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, *argv], env=env, stdout=out, stderr=err, check=False
        )
        seconds = time.perf_counter() - start
        client_cpu = _children_cpu() - client_before
        err.seek(0)
        text = err.read().decode().strip()
        if process.returncode != 0:
            return f"failed after {seconds:.0f} s: {text[:160]}"
    return Timing(
        seconds=seconds,
        peak_mib=int(text.splitlines()[-1].split()[1]) / 1024,
        client_cpu=client_cpu,
        server_cpu=_cpu(server_pid) - server_before,
    )


@dataclass(frozen=True)
class Timing:
    """Wall time is what the target is about; the CPU seconds are what holds still when
    other work shares the machine's two cores."""

    seconds: float
    peak_mib: float
    client_cpu: float
    server_cpu: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The command's own peak, read from its /proc/self/status as it exits. Not wait4's
# ru_maxrss: Linux carries the parent's peak into a child across exec, so every command
# showed this process's 53 MiB, whatever it used itself.
PEAK_RSS = """
import sys
from tts_otel.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    sys.stdout.flush()
    print(peak.strip(), file=sys.stderr)
sys.exit(code)
"""


def main(sizes: list[int]) -> None:
    from tests.services import Influx18Server

    limits = {"max-values-per-tag": "0", "max-series-per-database": "0"}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that influxd is killed too
    with tempfile.TemporaryDirectory() as tmp:
        server = Influx18Server(Path(tmp), limits)
        server.start()
        try:
            for spans in sizes:
                run_size(server, spans, flux=False)
            # Flux on 1.8 did not finish report over 50,000 spans within 120 s here (its
            # pivot, group and sort on the server): it runs on a size of its own, with
            # InfluxQL beside it on the same spans.
            run_size(server, FLUX_SPANS, flux=True)
        finally:
            server.kill()


def run_size(server: object, spans: int, flux: bool) -> None:
    from tests.services import Influx18Server

    assert isinstance(server, Influx18Server)
    db = f"bench{spans}{'flux' if flux else ''}"
    server.create_database(db)
    settings = influx_settings(
        environ={},
        url=server.url,
        db=db,
        username=server.USER,
        password=server.PASSWORD,
        timeout_s=120,
    )
    writer = InfluxWriter(settings)
    start = time.perf_counter()
    load(writer, spans)
    writer.close()
    stored = spans // SPANS_PER_REQUEST * SPANS_PER_REQUEST
    took = time.perf_counter() - start
    print(
        f"\n{stored:,} spans ({stored // SPANS_PER_REQUEST:,} requests, "
        f"{len(DEFAULT_SPAN_DIMENSIONS)} dimension tags) loaded in {took:.1f} s"
    )
    base = {**os.environ, "TTS_OTEL_INFLUXDB_URL": server.url, "TTS_OTEL_INFLUXDB_TIMEOUT": "120"}
    v1 = {
        **base,
        "TTS_OTEL_INFLUXDB_DB": db,
        "TTS_OTEL_INFLUXDB_USERNAME": server.USER,
        "TTS_OTEL_INFLUXDB_PASSWORD": server.PASSWORD,
        "TTS_OTEL_INFLUXDB_API": "v1",
    }
    v2 = {
        **base,
        "TTS_OTEL_INFLUXDB_API": "v2",
        "TTS_OTEL_INFLUXDB_TOKEN": server.token,
        "TTS_OTEL_INFLUXDB_ORG": server.ORG,
        "TTS_OTEL_INFLUXDB_BUCKET": server.bucket(db),
    }
    assert server._process is not None  # influxd's own CPU time is read from /proc
    server_pid = server._process.pid
    paths = [("InfluxQL", v1)] + ([("Flux", v2)] if flux else [])
    for api, env in paths:
        for argv in (
            ["report", "--influxdb", "--since", "1h"],
            ["trace", "--influxdb", "--since", "1h", "--slowest", "10"],
        ):
            result = timed(argv, env, server_pid)
            what = f"  {api:<8} {' '.join(argv[:1] + argv[2:]):<32}"
            if isinstance(result, str):
                print(f"{what} {result}")
                continue
            print(
                f"{what} {result.seconds:6.2f} s {stored / result.seconds:>8,.0f} spans/s  "
                f"peak RSS {result.peak_mib:5.1f} MiB  CPU: influxd {result.server_cpu:5.2f} s, "
                f"tts-otel {result.client_cpu:5.2f} s"
            )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [50_000, 200_000])
