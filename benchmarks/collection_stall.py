"""Does a metric collection stall the requests running meanwhile? Request p99, in one process.

tts-otel defers metric recording off the request path into a buffer. Two
set-ups of the reference workload, exporting metrics to a file every second
(spans are made but not exported, so their export does not hide the effect):
- "thread": as shipped, the buffer's own thread records it every
  MetricBuffer.DRAIN_INTERVAL_S, and each collection records what is left;
- "reader only": the drainer is held off, so each collection records the
  whole interval's backlog on the reader's thread in one go.

Python runs one thread at a time, so a long recording holds up whatever
request is running. The set-ups take turns in blocks longer than the export
interval, with a pause after each longer than it too, so each set-up's
collections land on its own requests.

Last line: ``p99_ratio=<thread p99 / reader-only p99>`` (below 1: the thread helps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider

import tts_otel
from benchmarks.outage import SHORT_TEXTS, p99, p99_difference_interval
from tts_otel.exporters.otlp_json import OtlpJsonMetricExporter
from tts_otel.reference import ReferencePipeline
from tts_otel.telemetry import set_telemetry

EXPORT_INTERVAL_MS = 1000
BLOCK = 150  # about 2.3 s of requests: two or three collections in each block
GAP_S = 1.5 * EXPORT_INTERVAL_MS / 1000  # the block's last collection happens in the gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500, help="per set-up")
    args = parser.parse_args()
    os.environ.setdefault("OTEL_METRIC_EXPORT_INTERVAL", str(EXPORT_INTERVAL_MS))

    import torch

    torch.set_num_threads(1)
    pipeline = ReferencePipeline(flow_steps=2)
    times: dict[str, list[float]] = {"thread": [], "reader only": []}
    with tempfile.TemporaryDirectory() as tmp:
        setups, meter_providers = {}, []
        for name in times:
            reader = PeriodicExportingMetricReader(
                OtlpJsonMetricExporter(Path(tmp) / f"{name.replace(' ', '-')}.jsonl")
            )
            meter_providers.append(MeterProvider([reader]))
            telemetry = tts_otel.configure(
                tracer_provider=TracerProvider(),
                meter_provider=meter_providers[-1],
                set_global=False,
                nvml=False,
                cuda=None,
            )
            if name == "reader only":
                # Before the first request starts the drainer: it then waits an hour.
                setattr(telemetry.buffer, "DRAIN_INTERVAL_S", 3600.0)  # noqa: B010
            set_telemetry(telemetry)
            for text in SHORT_TEXTS:  # warm up both paths
                pipeline.synthesize(text)
            setups[name] = telemetry
        names = list(setups)
        for block in range(-(-args.requests // BLOCK)):
            for name in names[block % 2 :] + names[: block % 2]:
                set_telemetry(setups[name])
                for index in range(BLOCK):
                    start = time.perf_counter()
                    pipeline.synthesize(SHORT_TEXTS[index % 2])
                    times[name].append(time.perf_counter() - start)
                time.sleep(GAP_S)
        set_telemetry(None)
        for telemetry in setups.values():
            telemetry.shutdown()
        for meter_provider in meter_providers:  # configure leaves providers it was given open
            meter_provider.shutdown()

    for name, samples in times.items():
        print(
            f"{name:>11}: p50 {statistics.median(samples) * 1000:6.2f} ms   "
            f"p99 {p99(samples) * 1000:6.2f} ms"
        )
    low, high = p99_difference_interval(times["thread"], times["reader only"])
    difference = p99(times["thread"]) - p99(times["reader only"])
    print(
        f"p99 thread - p99 reader only: {difference * 1000:+.3f} ms, "
        f"95% bootstrap interval [{low * 1000:+.3f}, {high * 1000:+.3f}] ms"
    )
    print(f"p99_ratio={p99(times['thread']) / p99(times['reader only']):.3f}")


if __name__ == "__main__":
    main()
