"""Does a dead backend cost the request anything? Request p99 with it down vs up.

``--target influxdb`` (default): the direct exporter; ``--target otlp``: OTLP
to the collector (otelcol-tts, built by collector/build.sh) in front of influxd.
One process, four tts-otel set-ups: the real backend
twice (up, and up again as an A/A control), a port nobody listens on
(connection refused), and a socket that accepts connections but never
answers (blackholed; each write waits for its timeout). Short requests of the
reference workload alternate between them, so machine drift lands on all
equally. The A/A difference is the noise floor of a p99 taken from this many
samples on this machine; read p99_added_ms against it. Then peak RSS growth
against the spool bound.

Last line: ``p99_added_ms=<worst down p99 - up p99>`` (target < 1).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

import tts_otel
from tts_otel.reference import TEXTS, ReferencePipeline
from tts_otel.telemetry import Telemetry, set_telemetry

SPOOL_BYTES = 8 * 1024 * 1024


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def telemetry_for(target: str, url: str) -> Telemetry:
    """A tts-otel set-up exporting to ``url`` (InfluxDB, or an OTLP/HTTP endpoint)."""
    if target == "otlp":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = url
        return tts_otel.configure(exporters="otlp", set_global=False, nvml=False, cuda=None)
    os.environ["TTS_OTEL_INFLUXDB_URL"] = url
    return tts_otel.configure(exporters="influxdb", set_global=False, nvml=False, cuda=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="per set-up")
    parser.add_argument("--target", choices=("influxdb", "otlp"), default="influxdb")
    args = parser.parse_args()
    os.environ.update({
        "TTS_OTEL_INFLUXDB_DB": "bench", "TTS_OTEL_INFLUXDB_SPOOL_BYTES": str(SPOOL_BYTES),
        "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    })  # fmt: skip

    from tests.services import Collector, InfluxServer, collector_binary, free_port, influxdb

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
        down = f"http://127.0.0.1:{free_port()}"
        hole = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        setups = {
            "up": telemetry_for(args.target, up_url),
            "up again": telemetry_for(args.target, up_url),
            "refused": telemetry_for(args.target, down),
            "blackholed": telemetry_for(args.target, hole),
        }
        pipeline = ReferencePipeline(flow_steps=2)
        for telemetry in setups.values():  # warm up every path
            set_telemetry(telemetry)
            pipeline.synthesize(TEXTS[0])
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times: dict[str, list[float]] = {name: [] for name in setups}
        for index in range(args.requests):
            order = list(setups.items())
            order = order[index % len(order) :] + order[: index % len(order)]
            for name, telemetry in order:
                set_telemetry(telemetry)
                start = time.perf_counter()
                pipeline.synthesize(TEXTS[index % 2])
                times[name].append(time.perf_counter() - start)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
        print(f"{name:>10}: p50 {median_ms:7.2f} ms   p99 {p99_ms:7.2f} ms")
    print(f"target {args.target}: influxd stored {stored} request spans of the two 'up' set-ups")
    if health:
        print(f"blackholed exporter health: {health}")
    growth_mib = (rss_after - rss_before) / 1024
    print(f"peak RSS growth during the run: {growth_mib:.1f} MiB "
          f"(direct exporter: spool bound {SPOOL_BYTES >> 20} MiB for each down set-up; "
          f"OTLP: the SDK's bounded span queue)")  # fmt: skip
    floor = abs(p99(times["up again"]) - p99(times["up"]))
    print(f"noise floor (A/A, |p99 up again - p99 up|): {floor * 1000:.3f} ms")
    added = max(p99(times["refused"]), p99(times["blackholed"])) - p99(times["up"])
    print(f"p99_added_ms={added * 1000:.3f}")


if __name__ == "__main__":
    main()
