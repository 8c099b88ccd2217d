from __future__ import annotations

from collections.abc import Iterator

import pytest

from tts_otel.testing import TelemetryCapture, capture


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "torch: runs torch (the reference workload, the GLM-TTS stand-ins); "
        "skipped where torch is not installed",
    )
    config.addinivalue_line(
        "markers",
        "gpu: needs a real NVIDIA GPU (torch with CUDA, NVML); skipped with the reason where "
        "there is none, as in CI: run `pytest -m gpu` where a GPU is lent",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The rest of the suite runs without torch, as the core does.
    if item.get_closest_marker("torch") is not None:
        pytest.importorskip("torch")


@pytest.fixture
def cap() -> Iterator[TelemetryCapture]:
    with capture() as telemetry:
        yield telemetry


class FakeClock:
    """Stands in for time.perf_counter so durations are exact."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("tts_otel.request.perf_counter", fake)
    monkeypatch.setattr("tts_otel.stages.perf_counter", fake)
    return fake
