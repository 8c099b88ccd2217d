"""The collector tier: an agent (collector/agent.yaml) routing by trace id to two gateways
(collector/gateway.yaml) that sample whole traces, all the real otelcol-tts on loopback,
fed by a real tts-otel service."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tts_otel
from tests.operations import test_collector
from tests.operations.test_collector import CONFIGS, _validate
from tests.services import InfluxServer, free_ports, influxdb, running, wait_for
from tts_otel import semconv

# test_collector's fixtures: the built collector, and no active telemetry left behind.
otelcol = test_collector.otelcol
_restore_active = test_collector._restore_active

COLLECTOR = Path(__file__).parent.parent.parent / "collector"
AGENT = COLLECTOR / "agent.yaml"
GATEWAY = [COLLECTOR / "config-influxdb-v1.yaml", COLLECTOR / "gateway.yaml"]
GATEWAY_FILE = COLLECTOR / "gateway-file.yaml"

# The workload. Slow requests sleep in a stage for longer than the gateways' threshold;
# failed ones raise in a stage. The rest are judged by the baseline alone.
REQUESTS, SLOW, FAILED = 1000, 50, 50
SLOW_REQUEST_MS = 100
SLOW_SLEEP_S = 0.15
BASELINE_PERCENT = 20
STAGES = ("text_normalization", "acoustic", "vocoder")
# A false failure of the baseline check at most this likely.
FALSE_FAILURE = 1e-4


def test_the_tier_components_are_built_in(otelcol: str) -> None:
    listed = subprocess.run([otelcol, "components"], capture_output=True, text=True, check=True)
    for name in ("load_balancing", "tail_sampling", "file"):
        assert f"- name: {name}\n" in listed.stdout, name


def test_agent_and_gateway_configs_validate(otelcol: str) -> None:
    gateways = "[127.0.0.1:4417, 127.0.0.1:4427]"
    done = _validate(otelcol, AGENT, OTELCOL_GATEWAY_ENDPOINTS=gateways)
    assert done.returncode == 0, done.stderr
    # The gateways are required: an agent without them fails at once, naming why.
    assert "no endpoints specified for the static resolver" in _validate(otelcol, AGENT).stderr
    for base in CONFIGS:  # InfluxDB 2.x and 1.x
        done = _validate(otelcol, base, GATEWAY[1])
        assert done.returncode == 0, done.stderr
        done = _validate(otelcol, base, GATEWAY[1], GATEWAY_FILE, OTELCOL_GATEWAY_FILE="kept")
        assert done.returncode == 0, done.stderr
    done = _validate(otelcol, *GATEWAY, OTELCOL_SAMPLING_BASELINE_PERCENT="ten")
    assert "sampling_percentage" in done.stderr


def test_the_gateway_threshold_is_the_latency_slo() -> None:
    """The default slow threshold is the SLO's bound in the alert rules, 30 s."""
    gateway = (COLLECTOR / "gateway.yaml").read_text()
    recording = (COLLECTOR.parent / "alerts" / "tts-recording.yml").read_text()
    assert "${env:OTELCOL_SAMPLING_SLOW_REQUEST_MS:-30000}" in gateway
    assert "Latency SLO: 99% of requests finish within 30 s" in recording
    assert f'span.name == "{semconv.SPAN_SYNTHESIZE}"' in gateway


@contextmanager
def _otelcol(
    binary: str, configs: list[Path], env: dict[str, str], health: int, log: Path
) -> Iterator[None]:
    """One otelcol-tts with its own environment (through env(1), which execs it: the
    process that `running` stops is the collector itself)."""
    command = ["env", *(f"{name}={value}" for name, value in env.items()), binary]
    command += [flag for config in configs for flag in ("--config", str(config))]
    with running(command, log, f"http://127.0.0.1:{health}/"):
        yield


@dataclass
class Gateway:
    index: int
    tmp: Path
    grpc: int = 0
    telemetry: int = 0

    @property
    def database(self) -> str:
        return f"gateway{self.index}"

    @property
    def kept_file(self) -> Path:
        return self.tmp / f"kept-{self.index}.jsonl"

    def decided(self) -> float:
        counts = self.decisions()
        return counts["sampled"] + counts["not_sampled"] + counts["dropped"]

    def decisions(self) -> dict[str, float]:
        """The tail sampler's decided traces by decision (its own telemetry)."""
        url = f"http://127.0.0.1:{self.telemetry}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode()
        counts: dict[str, float] = defaultdict(float)
        pattern = (
            r"^otelcol_processor_tail_sampling_global_count_traces_sampled\w*\{([^}]*)\} (\S+)$"
        )
        for labels, value in re.findall(pattern, page, re.M):
            decision = re.search(r'decision="(\w+)"', labels)
            counts[decision[1] if decision else "?"] += float(value)
        # Traces pushed out of memory before their decision (num_traces too small).
        name = "sampling_trace_dropped_too_early"
        for value in re.findall(rf"^otelcol_processor_tail_sampling_{name}\w* (\S+)$", page, re.M):
            counts[name] += float(value)
        return counts


def _kept(path: Path) -> dict[str, list[dict[str, object]]]:
    """Spans by trace id in a gateway's OTLP JSON lines."""
    traces: dict[str, list[dict[str, object]]] = defaultdict(list)
    if not path.exists():
        return traces
    for line in path.read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    traces[span["traceId"]].append(span)
    return traces


def _stored(server: InfluxServer, database: str) -> set[tuple[str, str]]:
    rows = server.query('SELECT "span.name", "trace_id", "span_id" FROM spans', database)
    return {(str(row["trace_id"]), str(row["span_id"])) for row in rows}


def _binomial_acceptance(n: int, p: float, false_failure: float) -> tuple[int, int]:
    """The narrowest [lo, hi] with P(X < lo) and P(X > hi) each at most false_failure / 2,
    X ~ Binomial(n, p) (in logarithms: the binomial coefficients overflow a float)."""

    def log_pmf(k: int) -> float:
        log_comb = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        return log_comb + k * math.log(p) + (n - k) * math.log1p(-p)

    pmf = [math.exp(log_pmf(k)) for k in range(n + 1)]
    lo, below = 0, 0.0
    while below + pmf[lo] <= false_failure / 2:
        below += pmf[lo]
        lo += 1
    hi, above = n, 0.0
    while above + pmf[hi] <= false_failure / 2:
        above += pmf[hi]
        hi -= 1
    return lo, hi


def _workload() -> tuple[set[int], set[int]]:
    """Which request indices are slow and which fail: disjoint, spread through the run."""
    step = REQUESTS // (SLOW + FAILED)
    chosen = list(range(0, REQUESTS, step))[: SLOW + FAILED]
    return set(chosen[0::2]), set(chosen[1::2])


class SynthesisFailed(RuntimeError):
    pass


def _serve(slow: set[int], failed: set[int]) -> None:
    for index in range(REQUESTS):
        try:
            with tts_otel.synthesis(
                model="glm-tts", sample_rate=24000, kv_cache=True, text="x" * 40
            ) as request:
                for name in STAGES:
                    with request.stage(name):
                        if name == "acoustic" and index in slow:
                            time.sleep(SLOW_SLEEP_S)
                        if name == "vocoder" and index in failed:
                            raise SynthesisFailed("vocoder out of memory")
                request.audio(samples=24000, sample_rate=24000)
        except SynthesisFailed:
            pass


@dataclass
class Tier:
    server: InfluxServer
    gateways: list[Gateway]
    agent_http: int
    stack: ExitStack

    def stop(self) -> None:
        """The agent, then the gateways, stopped by SIGTERM; then influxd."""
        self.stack.close()


@pytest.fixture
def tier(otelcol: str, tmp_path: Path) -> Iterator[Tier]:
    """influxd, two gateways (a database and a file each), and the agent in front of them."""
    with ExitStack() as stack:
        server = stack.enter_context(influxdb(tmp_path / "influx"))
        gateways = []
        for index in range(2):
            gateway = Gateway(index, tmp_path)
            gateway.grpc, http, prometheus, health, gateway.telemetry = free_ports(5)
            server.create_database(gateway.database)
            env = {
                "TTS_OTEL_INFLUXDB_URL": server.url,
                "TTS_OTEL_INFLUXDB_DB": gateway.database,
                "TTS_OTEL_INFLUXDB_USERNAME": server.USER,
                "TTS_OTEL_INFLUXDB_PASSWORD": server.PASSWORD,
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{gateway.grpc}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
                "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{prometheus}",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
                "OTELCOL_TELEMETRY_PORT": str(gateway.telemetry),
                "OTELCOL_QUEUE_DIR": str(tmp_path / f"queue-{index}"),
                "OTELCOL_GATEWAY_FILE": str(gateway.kept_file),
                "OTELCOL_SAMPLING_SLOW_REQUEST_MS": str(SLOW_REQUEST_MS),
                "OTELCOL_SAMPLING_BASELINE_PERCENT": str(BASELINE_PERCENT),
            }
            log = tmp_path / f"gateway-{index}.log"
            stack.enter_context(_otelcol(otelcol, [*GATEWAY, GATEWAY_FILE], env, health, log))
            gateways.append(gateway)
        grpc, http, health, telemetry = free_ports(4)
        endpoints = ", ".join(f"127.0.0.1:{gateway.grpc}" for gateway in gateways)
        env = {
            "OTELCOL_GATEWAY_ENDPOINTS": f"[{endpoints}]",
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
            "OTELCOL_TELEMETRY_PORT": str(telemetry),
            "OTELCOL_QUEUE_DIR": str(tmp_path / "agent-queue"),
        }
        stack.enter_context(_otelcol(otelcol, [AGENT], env, health, tmp_path / "agent.log"))
        yield Tier(server, gateways, http, stack)


@dataclass
class Sent:
    spans: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    slow: set[str] = field(default_factory=set)
    errors: set[str] = field(default_factory=set)


def _synthesize_through(agent_http: int, monkeypatch: pytest.MonkeyPatch) -> Sent:
    """The service, as on a host: OTLP to its local agent. Returns what it made."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{agent_http}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(REQUESTS * (len(STAGES) + 1)))
    made = InMemorySpanExporter()
    telemetry = tts_otel.configure(
        service_name="tts-gateway-test",
        exporters=["otlp", SimpleSpanProcessor(made)],
        set_global=False,
        nvml=False,
        cuda=None,
    )
    _serve(*_workload())
    telemetry.shutdown()  # every span is with the agent
    sent = Sent()
    for span in made.get_finished_spans():
        assert span.context is not None
        trace_id = format(span.context.trace_id, "032x")
        sent.spans[trace_id].append(format(span.context.span_id, "016x"))
        if span.name == semconv.SPAN_SYNTHESIZE:
            if (span.end_time or 0) - (span.start_time or 0) > SLOW_REQUEST_MS * 1_000_000:
                sent.slow.add(trace_id)
            if not span.status.is_ok:
                sent.errors.add(trace_id)
    return sent


def _settle(tier: Tier) -> list[dict[str, float]]:
    """Wait for every trace to be decided, and what was kept to be in InfluxDB and the files."""

    def decided() -> list[dict[str, float]] | None:
        counts = [gateway.decisions() for gateway in tier.gateways]
        return counts if sum(g.decided() for g in tier.gateways) >= REQUESTS else None

    decisions = wait_for(decided, 120, f"{REQUESTS} sampling decisions")
    for gateway, counts in zip(tier.gateways, decisions, strict=True):

        def landed(gateway: Gateway = gateway, kept: float = counts["sampled"]) -> bool:
            in_file = _kept(gateway.kept_file)
            ids = {(t, str(s["spanId"])) for t, spans in in_file.items() for s in spans}
            return len(in_file) == kept and _stored(tier.server, gateway.database) == ids

        wait_for(landed, 60, f"gateway {gateway.index}'s kept traces in InfluxDB and its file")
    return decisions


def _metrics_written(tier: Tier) -> list[bool]:
    def written() -> list[bool] | None:
        statement = 'SELECT count("counter") FROM "tts.requests"'
        found = [bool(tier.server.query(statement, g.database)) for g in tier.gateways]
        return found if any(found) else None

    return wait_for(written, 60, "the service's metrics in InfluxDB")


def test_one_agent_two_gateways_keep_whole_traces_errors_slow_and_the_baseline(
    tier: Tier, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _synthesize_through(tier.agent_http, monkeypatch)
    assert len(sent.spans) == REQUESTS
    assert len(sent.errors) == FAILED
    assert len(sent.slow) >= SLOW  # every planned one, and any that was slow by itself
    decisions = _settle(tier)
    # Metrics are not sampled: all of one service instance's go to one gateway.
    metrics_on = _metrics_written(tier)
    # Every trace decided once, on one gateway; none dropped for want of room.
    assert sum(g.decided() for g in tier.gateways) == REQUESTS
    assert all(counts.get("sampling_trace_dropped_too_early") == 0 for counts in decisions)
    tier.stop()

    kept = [_kept(gateway.kept_file) for gateway in tier.gateways]
    decided = [sum(c[k] for k in ("sampled", "not_sampled", "dropped")) for c in decisions]
    print(f"\nsent={REQUESTS} slow={len(sent.slow)} errors={len(sent.errors)}")
    for index, gateway_kept in enumerate(kept):
        print(f"gateway{index}: decided={decided[index]:.0f} kept={len(gateway_kept)}")
    # Routing: both gateways took traces, and no trace is on both.
    assert all(decided)
    assert all(kept)
    assert not set(kept[0]) & set(kept[1])
    on_gateways = {**kept[0], **kept[1]}
    # Complete: every span the service made for a kept trace, once, on its one gateway.
    for trace_id, spans in on_gateways.items():
        assert sorted(str(s["spanId"]) for s in spans) == sorted(sent.spans[trace_id]), trace_id
        assert len(spans) == len(STAGES) + 1
    # Every failed and every slow request kept.
    assert sent.errors <= set(on_gateways)
    assert sent.slow <= set(on_gateways)
    # The others: the baseline fraction, within what chance allows.
    others = set(sent.spans) - sent.errors - sent.slow
    baseline = len(set(on_gateways) & others)
    p = BASELINE_PERCENT / 100
    lo, hi = _binomial_acceptance(len(others), p, FALSE_FAILURE)
    print(
        f"baseline: kept {baseline} of {len(others)} = {baseline / len(others):.3f}, "
        f"configured {p}, accepted {lo}..{hi}"
    )
    assert lo <= baseline <= hi
    assert sum(metrics_on) == 1, metrics_on
