"""Label values are made safe once, where they enter: valid UTF-8 and bounded in length,
on the real Prometheus endpoint; what is changed is counted."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

import tts_otel
from tts_otel import semconv
from tts_otel._validation import MAX_LABEL_CHARS
from tts_otel.telemetry import Telemetry
from tts_otel.testing import attributes, capture

LONE_SURROGATE = "glm-\udc80tts"  # what surrogateescape makes of a non-UTF-8 byte


@pytest.fixture
def prometheus() -> Iterator[Telemetry]:
    telemetry = tts_otel.configure(
        prometheus=0, set_global=False, nvml=False, cuda=None, flush_on_signals=False
    )
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def _scrape(telemetry: Telemetry) -> tuple[int, bytes]:
    (url,) = telemetry.destinations
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def _cut(telemetry: Telemetry) -> int:
    return dict(telemetry._report.dropped()).get("cut", 0)


def test_a_lone_surrogate_in_a_model_name_leaves_every_scrape_working(
    prometheus: Telemetry,
) -> None:
    for stage in ("acoustic", "voc\udcffoder"):
        with tts_otel.synthesis(model=LONE_SURROGATE, telemetry=prometheus) as req:
            with req.stage(stage):
                pass
    for _ in range(3):
        status, body = _scrape(prometheus)
        assert status == 200
        assert semconv.METRIC_REQUEST_DURATION.replace(".", "_") in body.decode()
        assert "glm-\ufffdtts" in body.decode()
    assert _cut(prometheus) >= 2


def test_long_stage_names_make_a_bounded_scrape(prometheus: Telemetry) -> None:
    with tts_otel.synthesis(model="m" * 100_000, telemetry=prometheus) as req:
        for index in range(20):
            with req.stage(f"{index:02d}" + "s" * 100_000):
                pass
    status, body = _scrape(prometheus)
    assert status == 200
    # 21 values of 100 kB in several series each were 50 MB; cut, they are a few hundred kB.
    assert len(body) < 2_000_000
    assert _cut(prometheus) == 21


def test_span_attributes_carry_the_safe_values_too() -> None:
    with capture() as cap:
        with tts_otel.synthesis(model=LONE_SURROGATE) as req:
            with req.stage("voc\udcffoder"):
                pass
        root = attributes(cap.spans_named(semconv.SPAN_SYNTHESIZE)[0])
        assert root[semconv.ATTR_MODEL_NAME] == "glm-\ufffdtts"
        names = {span.name for span in cap.spans()}
        assert all(name.encode("utf-8") for name in names)
        label = cap.points(semconv.METRIC_STAGE_DURATION)[0]
        assert str(attributes(label)[semconv.ATTR_STAGE]).encode("utf-8")


def test_a_label_value_is_cut_to_the_bound() -> None:
    with capture() as cap:
        with tts_otel.synthesis(model="m" * 10_000):
            pass
        (point,) = cap.points(semconv.METRIC_REQUEST_DURATION)
        assert len(str(attributes(point)[semconv.ATTR_MODEL_NAME])) == MAX_LABEL_CHARS
