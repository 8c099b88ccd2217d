"""The ``tts-otel`` command: ``demo`` runs the reference workload; ``trace``, ``report`` and
``compare`` read what it (or any service) wrote, from OTLP JSON files or InfluxDB."""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any, get_args

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tts_otel._bootstrap import configure
from tts_otel.cli import reading as commands_
from tts_otel.cli.doctor import run_checks
from tts_otel.cli.reading import guarded
from tts_otel.config import DEFAULT_OUTPUT_DIR, Timing, exporter_names
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.read import summary
from tts_otel.read.records import from_sdk


def _latency(raw: str) -> tuple[str, float]:
    stage, _, seconds = raw.partition("=")
    try:
        return stage, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STAGE=SECONDS, got {raw!r}") from None


def _at_least_one(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a count of at least 1, got {raw!r}")
    return value


def _progress(done: int, total: int) -> None:
    # A bar redrawn with carriage returns is for a person at a terminal; in a log
    # or a pipe it is noise.
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} requests")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def demo(args: argparse.Namespace) -> int:
    try:
        from tts_otel.reference import TEXTS, ReferencePipeline
    except ImportError:
        print("tts-otel demo needs torch: pip install 'tts-otel[torch]'", file=sys.stderr)
        return 2
    names = exporter_names(args.exporter)
    collected = InMemorySpanExporter()
    try:
        telemetry = configure(
            service_name=args.service_name,
            exporters=[*names, SimpleSpanProcessor(collected)],
            output_dir=args.output_dir,
            timing=args.timing,
        )
    except ConfigurationError as error:
        print(f"tts-otel: {error}", file=sys.stderr)
        return 2
    pipeline = ReferencePipeline(
        sample_rate=args.sample_rate,
        kv_cache=args.kv_cache,
        flow_steps=args.flow_steps,
        inject_latency=dict(args.inject_latency),
    )
    print(
        f"tts-otel demo: {args.requests} requests, {args.sample_rate} Hz, "
        f"KV cache {'on' if args.kv_cache else 'off'}, "
        f"{'streaming' if args.streaming else 'whole-utterance'} "
        "(reference workload: random weights, the audio is noise)",
        file=sys.stderr,
    )
    texts = itertools.cycle(TEXTS)
    for done in range(1, args.requests + 1):
        pipeline.synthesize(next(texts), streaming=args.streaming)
        _progress(done, args.requests)
    if args.serve_for > 0:
        for place in telemetry.destinations:
            print(f"serving {place} for {args.serve_for:g} s", file=sys.stderr)
        time.sleep(args.serve_for)
    telemetry.shutdown()
    print(summary.render(summary.summarize(from_sdk(collected.get_finished_spans()))))
    for place in telemetry.destinations:
        print(f"telemetry went to {place}")
    return 0


def doctor(_args: argparse.Namespace) -> int:
    try:
        settings = influx_settings()
    except ConfigurationError as error:
        print(f"tts-otel: {error}", file=sys.stderr)
        return 2
    print(f"InfluxDB {settings.api} at {settings.target}")
    checks = list(run_checks(settings))
    for check in checks:
        print(check.render())
    return 0 if checks and all(check.ok for check in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tts-otel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("demo", help="run the reference workload and print per-stage latency")
    run.add_argument("--requests", type=int, default=20)
    run.add_argument("--sample-rate", type=int, choices=(24_000, 32_000), default=24_000)
    run.add_argument("--kv-cache", action=argparse.BooleanOptionalAction, default=True)
    run.add_argument("--streaming", action="store_true", help="stream audio chunk by chunk")
    run.add_argument(
        "--exporter",
        default="file",
        help="comma-separated: console, file, otlp, prometheus, influxdb (default: file)",
    )
    run.add_argument(
        "--serve-for",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the process (and a prometheus endpoint) up this long after the requests",
    )
    run.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    run.add_argument("--service-name", default="tts-reference")
    run.add_argument("--timing", choices=get_args(Timing), default=None)
    run.add_argument("--flow-steps", type=int, default=10)
    run.add_argument(
        "--inject-latency",
        type=_latency,
        action="append",
        default=[],
        metavar="STAGE=SECONDS",
        help="sleep this long inside a stage (e.g. vocoder=0.2)",
    )
    run.set_defaults(handler=demo)

    _read_commands(commands)
    check = commands.add_parser("doctor", help="check the InfluxDB in TTS_OTEL_INFLUXDB_*")
    check.set_defaults(handler=doctor)
    return parser


def _read_commands(commands: Any) -> None:
    """trace, report and compare: the read side (tts_otel.cli.reading)."""
    read = commands.add_parser("report", help="per-stage p50/p95/p99 and share of request time")
    read.add_argument(
        "traces", nargs="?", help=f"OTLP JSON file or directory (default {DEFAULT_OUTPUT_DIR})"
    )
    read.add_argument("--by", metavar="DIM[,DIM]", help="one table per value, e.g. kv_cache")
    read.add_argument("--every", metavar="DURATION", help="a trend: one line per bucket, e.g. 1h")
    read.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    read.set_defaults(handler=guarded(commands_.show_report))

    tree = commands.add_parser("trace", help="requests as waterfalls of their spans")
    tree.add_argument(
        "targets",
        nargs="*",
        metavar="[TRACE_ID] [FILE]",
        help=f"one trace by id; OTLP JSON file or directory (default {DEFAULT_OUTPUT_DIR})",
    )
    tree.add_argument("--last", type=_at_least_one, default=1, help="how many requests (default 1)")
    tree.add_argument("--slowest", type=_at_least_one, metavar="N", help="the N slowest requests")
    tree.add_argument("--stage", metavar="NAME", help="with --slowest: rank by this stage's time")
    tree.set_defaults(handler=guarded(commands_.show_trace))

    versus = commands.add_parser("compare", help="two selections: differences with 95%% intervals")
    versus.add_argument("a", metavar="A", help="e.g. model_version=1.0, kv_cache=true or 2d..1d")
    versus.add_argument("b", metavar="B", help="as A")
    versus.add_argument(
        "traces", nargs="?", help=f"OTLP JSON file or directory (default {DEFAULT_OUTPUT_DIR})"
    )
    versus.add_argument("--resamples", type=_at_least_one, default=1000, help="bootstrap rounds")
    versus.add_argument(
        "--seed", type=int, default=0, help="of the bootstrap (same data, same output)"
    )
    versus.add_argument("--html", metavar="FILE", help="also write the comparison as HTML")
    versus.set_defaults(handler=guarded(commands_.show_compare))
    for parser in (read, tree, versus):
        commands_.add_source_arguments(parser)
        commands_.add_selection_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "requests", 1) < 1:
        print("tts-otel: --requests must be at least 1", file=sys.stderr)
        return 2
    return int(args.handler(args))
