"""``tts-otel trace``, ``report`` and ``compare``: their arguments and what they do."""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from tts_otel.config import DEFAULT_OUTPUT_DIR
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.influxdb.settings import influx_settings
from tts_otel.read import compare as comparing
from tts_otel.read import summary, waterfall
from tts_otel.read.assemble import Facts, Outside, Request, facts, requests
from tts_otel.read.selection import (
    Selection,
    SelectionError,
    dimension,
    parse_spec,
    parse_time,
    selection,
)
from tts_otel.read.sources import Progress, ReadError, Source, file_source, influx_source

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_OVERRIDES = ("url", "api", "db", "rp", "org", "bucket")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the spans are")
    group.add_argument(
        "--influxdb",
        action="store_true",
        help="read InfluxDB as configured by TTS_OTEL_INFLUXDB_* (v1: InfluxQL, v2: Flux)",
    )
    for name in _OVERRIDES:
        group.add_argument(
            f"--influxdb-{name}",
            metavar=name.upper(),
            help=f"overrides TTS_OTEL_INFLUXDB_{name.upper()}",
        )


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which requests")
    group.add_argument("--since", help="1h, 2d, 30m ago, or an ISO timestamp (UTC by default)")
    group.add_argument("--until", help="as --since")
    group.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sample_rate, kv_cache, model_version, model, length_bin, streaming, outcome, "
        "service (repeatable; all must hold)",
    )


def open_source(args: argparse.Namespace, path: str | None) -> Source:
    overrides = {n: getattr(args, f"influxdb_{n}") for n in _OVERRIDES}
    given = {name: value for name, value in overrides.items() if value is not None}
    if not args.influxdb:
        if given:
            raise ReadError("--influxdb-* options need --influxdb")
        return file_source(path or DEFAULT_OUTPUT_DIR)
    if path is not None:
        raise ReadError(f"give a trace file ({path}) or --influxdb, not both")
    return influx_source(influx_settings(**given))


def _read(
    source: Source,
    chosen: Selection,
    progress: Progress,
    lean: bool = False,
    stages: Collection[str] | None = None,
    outside: Outside | None = None,
) -> Iterator[Request]:
    spans = source.spans(chosen, lean, stages) if lean else source.spans(chosen)
    return requests(progress.count(spans), chosen, source.ordered, outside)


def _nothing(source: Source, chosen: Selection, outside: Outside) -> ReadError:
    found = f" ({outside.note()})" if outside.stage_spans else ""
    return ReadError(
        f"no requests in {source.description} for {chosen.describe()}{found}: widen "
        "--since/--until, drop a --where, or check where the exporter writes"
    )


def _each_request(
    source: Source,
    chosen: Selection,
    lean: bool = False,
    stages: Collection[str] | None = None,
    outside: Outside | None = None,
) -> Iterator[Request]:
    """The selected requests, with progress; an error if there are none.

    ``lean``: requests whose stage spans may hold only stage, time and ids (see
    ``Source.spans``), enough for ``report``, ``compare`` and ranking; ``stages`` narrows
    which stage spans. ``outside`` counts the stage spans read that are in no request.
    """
    progress = Progress(source.description)
    outside = Outside() if outside is None else outside
    found = False
    try:
        for request in _read(source, chosen, progress, lean, stages, outside):
            found = True
            yield request
    finally:
        progress.done()
    if not found:
        raise _nothing(source, chosen, outside)


def show_trace(args: argparse.Namespace) -> int:
    trace_id, path = _trace_targets(args.targets)
    chosen = selection(args.since, args.until, args.where, trace_id)
    source = open_source(args, path)
    if trace_id is not None:
        print(waterfall.render(list(_each_request(source, chosen))))
        return 0
    # Ranked on lean requests (the roots, and one stage's spans for --stage), then only the
    # ones shown are read whole, by trace id: over 200,000 spans in influxd this reads
    # 1 span in 12 whole instead of all of them.
    stages = () if args.stage is None else (args.stage,)
    found = _each_request(source, chosen, lean=source.lean, stages=stages)
    if args.slowest:
        shown = waterfall.slowest(found, args.slowest, args.stage)
    else:
        shown = waterfall.latest(found, args.last)
    if source.lean:
        shown = [_whole(source, chosen, request) for request in shown]
    print(waterfall.render(shown))
    return 0


def _whole(source: Source, chosen: Selection, request: Request) -> Request:
    """The request read again with all its spans whole (one query on its trace id)."""
    one = chosen.narrowed(Selection(trace_id=request.root.trace_id))
    return next(
        (r for r in _each_request(source, one) if r.root.span_id == request.root.span_id), request
    )


def _trace_targets(targets: list[str]) -> tuple[str | None, str | None]:
    """``[TRACE_ID] [FILE]`` in either order: a trace id is 32 hex digits and not a path."""
    trace_id = path = None
    for target in targets:
        if _TRACE_ID.match(target) and not Path(target).exists() and trace_id is None:
            trace_id = target
        elif path is None:
            path = target
        else:
            raise SelectionError(f"expected [TRACE_ID] [FILE], got {' '.join(targets)}")
    return trace_id, path


def show_report(args: argparse.Namespace) -> int:
    chosen = selection(args.since, args.until, args.where)
    by = [dimension(d.strip()) for d in (args.by or "").split(",") if d.strip()]
    every_ns = _every(args.every)
    source = open_source(args, args.traces)
    outside = Outside()
    if args.html:
        folded: list[Facts] = []

        def keep(requests: Iterable[Request]) -> Iterator[Request]:
            for request in requests:
                folded.append(facts(request))
                yield request

        found = keep(_each_request(source, chosen, outside=outside))
        _html(args.html, found, outside=outside, title="tts-otel report")
        groups = summary.fold(folded, by, every_ns)
    else:
        # Folded as they stream: what is kept is one float per request and stage, not the
        # requests (a list of Facts held each request's attributes, about 1 KB apiece).
        found = _each_request(source, chosen, lean=True, outside=outside)
        groups = summary.fold((facts(request) for request in found), by, every_ns)
    if every_ns:
        print(summary.render_trend(groups, by))
    elif by:
        print(summary.render_groups(groups, by))
    else:
        print(summary.render(groups[(0, ())].summary(), outside.note()))
    if (every_ns or by) and outside.stage_spans:
        print(f"\n{outside.note()}")
    return 0


def _every(raw: str | None) -> int | None:
    if raw is None:
        return None
    span = -parse_time(raw, now_ns=0)
    if span <= 0:
        raise SelectionError(f"--every needs a duration such as 1h or 1d, got {raw!r}")
    return span


def _html(path: str, found: Iterable[Request], **options: Any) -> None:
    # Imported when asked: the renderer and its plotting library load only for --html.
    from tts_otel.read.html import write_html

    write_html(Path(path), found, **options)
    print(f"wrote {path}", file=sys.stderr)


def show_compare(args: argparse.Namespace) -> int:
    shared = selection(args.since, args.until, args.where)
    sides = [shared.narrowed(parse_spec(raw)) for raw in (args.a, args.b)]
    source = open_source(args, args.traces)
    outside = [Outside() for _ in sides]
    collected = [
        [facts(r) for r in _each_request(source, side, lean=True, outside=apart)]
        for side, apart in zip(sides, outside, strict=True)
    ]
    rows = comparing.compare(*collected, resamples=args.resamples, rng=random.Random(args.seed))
    print(
        comparing.render(
            rows,
            args.a,
            args.b,
            len(collected[0]),
            len(collected[1]),
            [apart.note() for apart in outside],
        )
    )
    if args.html:
        found = itertools.chain.from_iterable(_each_request(source, side) for side in sides)
        _html(
            args.html,
            found,
            comparison=[row.as_dict() for row in rows],
            title=f"tts-otel compare: {args.a} vs {args.b}",
        )
    return 0


def guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line on stderr and exit code 2 for what the user can fix: no traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (ReadError, SelectionError, ConfigurationError) as error:
            print(f"tts-otel: {error}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the exit flush is quiet
            return 0

    return run
