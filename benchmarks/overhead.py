"""Request-path cost of tts-otel against hand-written OpenTelemetry, in one process.

1. Empty stages: tts-otel's full instrumentation (request span, four stage
   spans, every request metric) against plain SDK code doing five spans and
   four histogram records. Both use the same providers; runs alternate.
   Each request is timed on its own and the median taken, so a metric
   collection on the reader's thread does not land on one side only.
   ``cpu_ratio`` also charges the deferred metric recording (done by the
   metric buffer's thread and the reader) to tts-otel: CPU per request,
   collections included.
2. The reference workload over the demo corpus: the time the request thread
   spends inside tts-otel, over the request time (``workload_overhead_pct``);
   and, as a cross-check, the same texts with and without telemetry.

Last line: ``overhead_ratio=<ours/plain>`` (target <= 1.0).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.types import AttributeValue

sys.path.insert(0, str(Path(__file__).parent.parent))

import tts_otel
from benchmarks.telemetry_clock import TelemetryClock
from tts_otel import semconv
from tts_otel.telemetry import Telemetry, set_telemetry

STAGES = semconv.TOP_LEVEL_STAGES


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def providers() -> tuple[TracerProvider, MeterProvider, InMemoryMetricReader]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=1 << 16))
    reader = InMemoryMetricReader()
    return tracer_provider, MeterProvider(metric_readers=[reader]), reader


def plain_request(tracer: trace_api.Tracer, histogram: metrics_api.Histogram) -> None:
    """What a careful engineer writes by hand: five spans, four stage histogram records."""
    attributes: dict[str, AttributeValue] = {
        "tts.model.name": "glm-tts",
        "tts.sample_rate": 24000,
        "tts.kv_cache": True,
    }
    with tracer.start_as_current_span("tts.synthesize", attributes=attributes):
        for stage in STAGES:
            start = time.perf_counter()
            with tracer.start_as_current_span("tts." + stage, attributes={"tts.stage": stage}):
                pass
            histogram.record(time.perf_counter() - start, {**attributes, "tts.stage": stage})


def ours_request() -> None:
    with tts_otel.synthesis(
        model="glm-tts", sample_rate=24000, kv_cache=True, text="今天天气很好，我们去公园散步吧！"
    ) as request:
        for stage in STAGES:
            with request.stage(stage):
                pass
        request.speech_tokens(100)
        request.audio(samples=96000)


def timed(run: Callable[[], None], count: int) -> tuple[list[float], float]:
    """Per-request seconds, and CPU seconds for the whole block."""
    samples = []
    cpu = time.process_time()
    for _ in range(count):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples, time.process_time() - cpu


def empty_stages(rounds: int, per_round: int) -> float:
    tracer_provider, meter_provider, reader = providers()
    telemetry = tts_otel.configure(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        set_global=False,
        nvml=False,
        cuda=None,
    )
    tracer = tracer_provider.get_tracer("plain")
    histogram = meter_provider.get_meter("plain").create_histogram(
        "plain.stage.duration",
        unit="s",
        explicit_bucket_boundaries_advisory=semconv.LATENCY_BUCKETS_S,
    )

    def plain() -> None:
        plain_request(tracer, histogram)

    def ours_with_collection() -> None:
        ours_request()

    ours_times: list[float] = []
    plain_times: list[float] = []
    ours_cpu = plain_cpu = 0.0
    timed(ours_request, 500)  # warm both paths
    timed(plain, 500)
    for _ in range(rounds):
        for run, times, is_ours in (
            (ours_with_collection, ours_times, True),
            (plain, plain_times, False),
        ):
            gc.collect()
            samples, cpu = timed(run, per_round)
            # The collection records what tts-otel deferred: charge it to its side.
            collect_start = time.process_time()
            reader.get_metrics_data()
            cpu += time.process_time() - collect_start
            times.extend(samples)
            if is_ours:
                ours_cpu += cpu
            else:
                plain_cpu += cpu
    telemetry.shutdown()
    tracer_provider.shutdown()
    ours_us = statistics.median(ours_times) * 1e6
    plain_us = statistics.median(plain_times) * 1e6
    total = rounds * per_round
    print(
        f"empty stages, median per request: tts-otel {ours_us:.1f} us, plain OTel {plain_us:.1f} us"
    )
    print(
        f"cpu per request incl. metric collection: tts-otel {ours_cpu / total * 1e6:.1f} us, "
        f"plain OTel {plain_cpu / total * 1e6:.1f} us"
    )
    print(f"cpu_ratio={ours_cpu / plain_cpu:.3f}")
    return ours_us / plain_us


def workload(pairs: int) -> float:
    from tts_otel.reference import TEXTS, ReferencePipeline

    tracer_provider, meter_provider, reader = providers()
    instrumented = tts_otel.configure(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        set_global=False,
        nvml=False,
        cuda=None,
    )
    silent = Telemetry(
        instrumented.settings,
        trace_api.NoOpTracerProvider(),
        metrics_api.NoOpMeterProvider(),
        owns_providers=False,
        cuda=None,
    )
    pipeline = ReferencePipeline()
    for telemetry in (instrumented, silent, instrumented, silent):
        set_telemetry(telemetry)
        pipeline.synthesize(TEXTS[0])

    # 1. Direct: time inside tts-otel over time of the instrumented requests.
    set_telemetry(instrumented)
    request_seconds = 0.0
    with TelemetryClock() as clock:
        for index in range(pairs):
            start = time.perf_counter()
            pipeline.synthesize(TEXTS[index % len(TEXTS)])
            request_seconds += time.perf_counter() - start
            if index % 20 == 0:
                reader.get_metrics_data()
    pct = clock.seconds / request_seconds * 100
    print(
        f"reference workload ({pairs} requests over the demo corpus): "
        f"{clock.seconds / pairs * 1e6:.0f} us of tts-otel per request, "
        f"{request_seconds / pairs * 1000:.1f} ms per request"
    )

    # 2. A/B cross-check: each text with and without telemetry, alternating.
    # Its noise (a few % per pair on 2 cores) is larger than the effect, so it
    # is printed with its standard error, not used as the headline figure.
    relative: list[float] = []
    for index in range(pairs):
        text = TEXTS[index % len(TEXTS)]
        seconds = {}
        for telemetry in (instrumented, silent) if index % 2 else (silent, instrumented):
            set_telemetry(telemetry)
            start = time.perf_counter()
            pipeline.synthesize(text)
            seconds[telemetry is instrumented] = time.perf_counter() - start
        relative.append(seconds[True] / seconds[False] - 1)
    set_telemetry(None)
    instrumented.shutdown()
    tracer_provider.shutdown()
    error = statistics.stdev(relative) / len(relative) ** 0.5 * 100
    print(
        f"A/B cross-check: mean added time {statistics.mean(relative) * 100:+.2f}% "
        f"+- {error:.2f}% (one standard error)"
    )
    return pct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=80)
    args = parser.parse_args()
    pct = workload(args.pairs)
    print(f"workload_overhead_pct={pct:.3f}")
    ratio = empty_stages(args.rounds, args.per_round)
    print(f"overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
