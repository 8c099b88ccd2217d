"""Does a dead backend cost the request anything? Request p99 with it down vs up.

``--target influxdb`` (default): the direct exporter; ``--target otlp``: OTLP
to the collector (otelcol-tts, built by collector/build.sh) in front of influxd.
One process, four tts-otel set-ups: the real backend
twice (up, and up again as an A/A control), a port nobody listens on
(connection refused), and a socket that accepts connections but never
answers (blackholed; a write that reaches it waits out its timeout).

Each set-up serves the reference workload in blocks of BLOCK requests, and
the set-ups take turns in a rotating order, so machine drift lands on all
equally. A pause after each block lets that set-up's exporter send its last
spans before the next block starts: the background work a set-up causes lands
on its own requests, which is what the question is about. (The earlier
design alternated single requests, which spread every set-up's exporting over
all four.) The backend (influxd, the collector) runs on a core of its own.
The A/A difference is the noise floor of a p99 taken from this many samples
on this machine; read p99_added_ms against it, and against the 95% bootstrap
interval printed for each down set-up.

Telemetry adds a roughly fixed cost per request, so the carrier is chosen to
be short and steady: two one-phrase texts and one torch thread. A shorter
request also makes a stall on the request path stand out more. Each request
also reports the time its thread spent inside tts-otel's own code
(TelemetryClock): the only place a dead backend could add work to the request
path directly. Each set-up's background work is reported as the CPU time of
its threads. Then peak RSS growth against the spool bound.

Last line: ``p99_added_ms=<worst down p99 - up p99>`` (target < 1).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

import tts_otel
from benchmarks.telemetry_clock import TelemetryClock
from tts_otel.reference import ReferencePipeline
from tts_otel.telemetry import Telemetry, set_telemetry

SPOOL_BYTES = 8 * 1024 * 1024
SHORT_TEXTS = ("你好。", "Hello there.")
BLOCK = 50
# Longer than OTEL_BSP_SCHEDULE_DELAY below, so a block's last spans are exported before the next.
GAP_S = 0.4


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def p99_difference_interval(
    down: list[float], up: list[float], resamples: int = 400
) -> tuple[float, float]:
    """95% bootstrap interval of p99(down) - p99(up): how far sampling noise alone moves it."""
    rng = random.Random(0)
    differences = sorted(
        p99(rng.choices(down, k=len(down))) - p99(rng.choices(up, k=len(up)))
        for _ in range(resamples)
    )
    return differences[int(resamples * 0.025)], differences[int(resamples * 0.975) - 1]


def telemetry_for(target: str, url: str) -> Telemetry:
    """A tts-otel set-up exporting to ``url`` (InfluxDB, or an OTLP/HTTP endpoint)."""
    variable = "OTEL_EXPORTER_OTLP_ENDPOINT" if target == "otlp" else "TTS_OTEL_INFLUXDB_URL"
    os.environ[variable] = url
    return tts_otel.configure(exporters=target, set_global=False, nvml=False, cuda=None)


def cpu_seconds(threads: list[threading.Thread]) -> float:
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threads
        if thread.ident is not None and thread.is_alive()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per set-up")
    parser.add_argument("--target", choices=("influxdb", "otlp"), default="influxdb")
    args = parser.parse_args()
    for key, value in {
        "TTS_OTEL_INFLUXDB_DB": "bench",
        "TTS_OTEL_INFLUXDB_SPOOL_BYTES": str(SPOOL_BYTES),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }.items():
        os.environ.setdefault(key, value)  # a variable set by the caller wins

    import torch

    torch.set_num_threads(1)
    from tests.services import Collector, InfluxServer, collector_binary, free_port, influxdb

    # The backend gets a core of its own, as it would have a host of its own in production;
    # on a small machine its writes and compactions otherwise land on the requests' core.
    # Set on this thread before the servers start: they inherit it, then this thread moves.
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[0]})
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(1024)  # the kernel completes handshakes; nobody ever reads
    with tempfile.TemporaryDirectory() as tmp, influxdb(Path(tmp) / "influx") as server:
        server.create_database("bench")
        os.environ["TTS_OTEL_INFLUXDB_USERNAME"] = InfluxServer.USER
        os.environ["TTS_OTEL_INFLUXDB_PASSWORD"] = InfluxServer.PASSWORD
        collector = None
        up_url = server.url
        if args.target == "otlp":
            config = Path(__file__).parent.parent / "collector" / "config-influxdb-v1.yaml"
            collector = Collector(collector_binary(), config, Path(tmp), server, "bench")
            collector.start()
            up_url = f"http://127.0.0.1:{collector.http}"
        if len(cores) >= 2:
            os.sched_setaffinity(0, set(cores[1:]))
        down = f"http://127.0.0.1:{free_port()}"
        hole = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        urls = {"up": up_url, "up again": up_url, "refused": down, "blackholed": hole}
        pipeline = ReferencePipeline(flow_steps=2)
        setups, threads = {}, {}
        for name, url in urls.items():
            # Threads started by configure and by the first requests (the metric buffer's drainer).
            before = set(threading.enumerate())
            setups[name] = telemetry_for(args.target, url)
            set_telemetry(setups[name])
            for text in SHORT_TEXTS:  # warm up every path
                pipeline.synthesize(text)
            threads[name] = [thread for thread in threading.enumerate() if thread not in before]
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu_before = {
            name: cpu_seconds(started_threads) for name, started_threads in threads.items()
        }
        times: dict[str, list[float]] = {name: [] for name in setups}
        inside: dict[str, list[float]] = {name: [] for name in setups}
        names = list(setups)
        with TelemetryClock() as clock:
            for block in range(-(-args.requests // BLOCK)):
                turn = block % len(names)
                for name in names[turn:] + names[:turn]:
                    set_telemetry(setups[name])
                    for index in range(BLOCK):
                        start, start_inside = time.perf_counter(), clock.seconds
                        pipeline.synthesize(SHORT_TEXTS[index % 2])
                        times[name].append(time.perf_counter() - start)
                        inside[name].append(clock.seconds - start_inside)
                    time.sleep(GAP_S)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        background = {
            name: cpu_seconds(started_threads) - cpu_before[name]
            for name, started_threads in threads.items()
        }
        set_telemetry(None)
        health = {}
        if args.target == "influxdb":
            health = setups["blackholed"].exporter_health()["influxdb"]
        # Shutting down a set-up whose backend never answers waits for its exporter's timeout.
        for telemetry in setups.values():
            telemetry.shutdown()
        if collector is not None:
            time.sleep(2)  # past the collector's batch timeout
            collector.stop()
        stored = len(
            server.query("SELECT * FROM spans WHERE \"span.name\"='tts.synthesize'", "bench")
        )
    blackhole.close()

    for name, samples in times.items():
        median_ms, p99_ms = statistics.median(samples) * 1000, p99(samples) * 1000
        print(
            f"{name:>10}: p50 {median_ms:7.2f} ms   p99 {p99_ms:7.2f} ms   "
            f"inside tts-otel: p50 {statistics.median(inside[name]) * 1e6:5.0f} us  "
            f"p99 {p99(inside[name]) * 1e6:5.0f} us"
        )
    print(
        "CPU of each set-up's background threads during the run: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in background.items())
    )
    print(f"target {args.target}: influxd stored {stored} request spans of the two 'up' set-ups")
    if health:
        print(f"blackholed exporter health: {health}")
    growth_mib = (rss_after - rss_before) / 1024
    print(
        f"peak RSS growth during the run: {growth_mib:.1f} MiB "
        f"(direct exporter: spool bound {SPOOL_BYTES >> 20} MiB for each down set-up; "
        f"OTLP: the SDK's bounded span queue)"
    )
    floor = abs(p99(times["up again"]) - p99(times["up"]))
    print(f"noise floor (A/A, |p99 up again - p99 up|): {floor * 1000:.3f} ms")
    highs = []
    for name in ("refused", "blackholed"):
        low, high = p99_difference_interval(times[name], times["up"])
        highs.append(high)
        print(
            f"p99 {name} - p99 up: {(p99(times[name]) - p99(times['up'])) * 1000:+.3f} ms, "
            f"95% bootstrap interval [{low * 1000:+.3f}, {high * 1000:+.3f}] ms"
        )
    print(f"upper end of those intervals: {max(highs) * 1000:+.3f} ms")
    added = max(p99(times["refused"]), p99(times["blackholed"])) - p99(times["up"])
    print(f"p99_added_ms={added * 1000:.3f}")


if __name__ == "__main__":
    main()
