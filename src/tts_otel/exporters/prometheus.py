"""The ``prometheus`` exporter: a ``/metrics`` endpoint on OpenTelemetry's Prometheus reader.

Bound to 127.0.0.1 by default (``TTS_OTEL_PROMETHEUS_HOST``/``_PORT``). Each
``configure()`` gets its own registry, with process and Python metrics
beside tts-otel's. Several worker processes: give each its own port (the
README shows a gunicorn hook); Prometheus scrapes each and ``sum()`` adds
them up, because every worker exposes the same histogram buckets.
"""

from __future__ import annotations

import socket

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import start_http_server

from tts_otel._validation import describe
from tts_otel.config import Settings, origin
from tts_otel.errors import ConfigurationError
from tts_otel.exporters.parts import ExporterParts


def prometheus_endpoint(settings: Settings) -> ExporterParts:
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    host, port = settings.prometheus_host, settings.prometheus_port
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except socket.gaierror as error:  # the address does not resolve: the host is wrong
        reader.shutdown()
        raise ConfigurationError(
            origin("prometheus_host", host),
            f"cannot listen on {describe(host)}: {error.strerror}",
            "use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        ) from error
    except OSError as error:
        reader.shutdown()
        raise ConfigurationError(
            origin("prometheus_port", port),
            f"cannot listen on {host}:{port}: {error.strerror}",
            "choose a free port (one per worker process) or stop what holds it",
        ) from error
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])

    def close() -> None:
        server.shutdown()
        server.server_close()

    return ExporterParts(
        metric_reader=reader,
        where=f"http://{bound_host}:{bound_port}/metrics",
        close=close,
    )
