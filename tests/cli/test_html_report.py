"""``write_html``: the report's page, checked in a real headless browser (Debian's chromium).

The page must load from a file with the network unreachable, log no error,
and draw every chart: the screenshot is decoded (a small PNG reader, zlib and
struct) and each chart's area, located by a probe script in a copy of the
page, must hold drawn content.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tts_otel import semconv
from tts_otel.read.assemble import Request, requests
from tts_otel.read.html import MissingExtraError, write_html
from tts_otel.read.records import SpanRecord
from tts_otel.read.selection import Selection

START_NS = 1_755_000_000 * 10**9
HOUR_NS = 3600 * 10**9
STAGES = (
    (semconv.STAGE_SPEAKER_EMBEDDING, 0.020),
    (semconv.STAGE_TEXT_NORMALIZATION, 0.005),
    (semconv.STAGE_ACOUSTIC, 0.300),
    (semconv.STAGE_VOCODER, 0.080),
)
CONFIGURATIONS = tuple(
    {
        semconv.ATTR_KV_CACHE: kv_cache,
        semconv.ATTR_SAMPLE_RATE: rate,
        semconv.ATTR_MODEL_VERSION: version,
    }
    for kv_cache, rate, version in ((True, 24000, "1.1"), (False, 32000, "1.0"))
)


def synthetic_spans(requests: int, seed: int = 7) -> Iterator[SpanRecord]:
    """Request trees over 24 h in two configurations; the second is slower and drifts up.

    Children come before their root, as an SDK exports them (a span is exported when it ends).
    """
    rng = random.Random(seed)
    for index in range(requests):
        configuration = CONFIGURATIONS[index % 2]
        slow = 1.0 if configuration[semconv.ATTR_KV_CACHE] else 1.8 + index / requests
        characters = rng.choice((20, 40, 70, 90, 150, 220))
        trace = f"{index + 1:032x}"
        root_id = f"{index + 1:08x}00000000"
        start = START_NS + index * 24 * HOUR_NS // requests
        cursor = start + 1_000_000
        children = []
        for number, (stage, seconds) in enumerate(STAGES, start=1):
            duration = int(seconds * slow * (characters / 60) ** 0.5 * rng.uniform(0.8, 1.3) * 1e9)
            children.append(
                SpanRecord(
                    trace_id=trace,
                    span_id=f"{index + 1:08x}{number:08x}",
                    parent_id=root_id,
                    name=semconv.stage_span_name(stage),
                    start_ns=cursor,
                    end_ns=cursor + duration,
                    attributes={
                        semconv.ATTR_STAGE: stage,
                        semconv.ATTR_SEGMENT_INDEX: 0,
                        semconv.ATTR_STAGE_GPU_DURATION: duration / 1e9 * 0.9,
                    },
                )
            )
            cursor += duration
        audio = characters / 14
        yield from children
        yield SpanRecord(
            trace_id=trace,
            span_id=root_id,
            name=semconv.SPAN_SYNTHESIZE,
            start_ns=start,
            end_ns=cursor + 500_000,
            attributes={
                **configuration,
                semconv.ATTR_TEXT_LENGTH_BIN: semconv.length_bin(characters),
                semconv.ATTR_AUDIO_DURATION: audio,
                semconv.ATTR_GPU_MEMORY_PEAK: int((900 + 40 * audio) * 2**20 * slow),
                semconv.ATTR_REAL_TIME_FACTOR: (cursor - start) / 1e9 / audio,
                semconv.ATTR_OUTCOME: semconv.OUTCOME_OK,
            },
        )


def requests_of(spans: Iterable[SpanRecord]) -> Iterator[Request]:
    return requests(spans, Selection(), ordered=False)


COMPARISON = [
    {
        "stage": stage,
        "metric": metric,
        "a": 0.30,
        "b": 0.33,
        "diff": 0.03,
        "low": 0.01,
        "high": 0.05,
        "verdict": "B is slower",
    }
    for stage in ("request", "acoustic", "vocoder")
    for metric in ("p50", "p95")
] + [
    {
        "stage": "request",
        "metric": "rtf",
        "a": 0.2,
        "b": 0.21,
        "diff": 0.01,
        "low": -0.01,
        "high": 0.03,
        "verdict": "no detectable difference",
    }
]


# --- a small PNG reader --------------------------------------------------------
@dataclass
class Image:
    pixels: NDArray[np.uint8]  # height x width x RGB

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def drawn(self, left: int, top: int, right: int, bottom: int) -> int:
        """Pixels in the box that are neither white nor grey: drawn marks, not paper or text."""
        box = self.pixels[max(0, top) : bottom, max(0, left) : right].astype(np.int16)
        return int(((box.max(axis=2) - box.min(axis=2)) > 40).sum())


def read_png(path: Path) -> Image:
    """8-bit RGB or RGBA, non-interlaced: what chromium's screenshots are."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), colour
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8)
    rows = raw.reshape(height, width * channels + 1)
    pixels = np.zeros((height, width * channels), dtype=np.uint8)
    above = np.zeros(width * channels, dtype=np.uint8)
    for y in range(height):
        pixels[y] = above = _unfilter(int(rows[y, 0]), rows[y, 1:], above, channels)
    return Image(pixels.reshape(height, width, channels)[:, :, :3])


def _unfilter(kind: int, line: NDArray[np.uint8], above: NDArray[np.uint8], bpp: int) -> Any:
    """One scanline's filter undone (PNG spec, section 9); sums wrap at 256."""
    if kind == 0:
        return line
    if kind == 1:  # Sub: a running sum per channel
        return (
            (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint64) % 256)
            .astype(np.uint8)
            .reshape(-1)
        )
    if kind == 2:  # Up
        return line + above
    # Average and Paeth depend on the byte just decoded: one byte at a time.
    out, up = bytearray(line.tobytes()), above.tobytes()
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        if kind == 3:
            predictor = (left + up[i]) // 2
        else:
            up_left = up[i - bpp] if i >= bpp else 0
            p = left + up[i] - up_left
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - up_left)
            predictor = left if pa <= pb and pa <= pc else up[i] if pb <= pc else up_left
        out[i] = (out[i] + predictor) & 0xFF
    return np.frombuffer(bytes(out), dtype=np.uint8)


# --- the browser ------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
WIDTH = 1400
# A probe in a copy of the page: records errors (set before any other script runs) and,
# once everything has loaded, each chart's box, into an element chromium's --dump-dom shows.
PROBE = """<script>
window.__probe = {errors: [], charts: []};
window.addEventListener('error', e => window.__probe.errors.push(String(e.message)));
const consoleError = console.error;
console.error = (...args) => { window.__probe.errors.push(args.join(' ')); consoleError(...args); };
window.addEventListener('load', () => setTimeout(() => {
  for (const chart of document.querySelectorAll('.js-plotly-plot')) {
    const box = chart.getBoundingClientRect();
    window.__probe.charts.push({top: box.top + window.scrollY, left: box.left, width: box.width,
      height: box.height, marks: chart.querySelectorAll('.trace path').length});
  }
  const out = document.createElement('pre');
  out.id = 'probe'; out.style.display = 'none';
  out.textContent = JSON.stringify(window.__probe);
  document.body.appendChild(out);
}, 500));
</script>"""


def chromium(*arguments: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Headless chromium with a fresh profile and no network (its own empty network namespace)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        *arguments,
    ]
    # unshare --net: only a loopback that is down, so any fetch the page tried would fail.
    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"]).returncode == 0:
        command = ["unshare", "--net", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def probed_copy(page: Path) -> Path:
    copy = page.with_name(f"probed-{page.name}")
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    return copy


def probe(page: Path, tmp: Path) -> dict[str, Any]:
    # The screenshot's width, so that the boxes found here are where the screenshot has them.
    done = chromium("--dump-dom", f"--window-size={WIDTH},3000", page.as_uri(), tmp=tmp)
    found = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe never ran: {done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    result["log"] = done.stderr
    return result


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and "Uncaught" in line]


# --- tests ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html(
        path, requests_of(synthetic_spans(600)), comparison=COMPARISON, title="tts-otel test report"
    )
    return path


def test_the_page_is_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    # Outside the inlined scripts (plotly.js holds URLs as strings), nothing points off the page.
    markup = re.sub(r"<script[^>]*>.*?</script>", "<script></script>", text, flags=re.S)
    assert not re.search(r"""(src|href)\s*=""", markup), "loads something from elsewhere"
    assert text.count("Plotly.newPlot") >= 9  # 3 article charts, stages, 5 waterfalls, comparison
    for heading in (
        "Latency over time by configuration",
        "Peak GPU memory against audio duration",
        "Latency by text length bin",
        "Per-stage latency over time",
        "Slowest requests",
        "Comparison",
        "no detectable difference",
    ):
        assert heading in text


def test_the_probe_sees_errors(tmp_path: Path) -> None:
    """The negative control: a page that throws is caught, so a clean run means something."""
    page = tmp_path / "broken.html"
    page.write_text("<html><head></head><body><script>undefinedFunction()</script></body></html>")
    found = probe(probed_copy(page), tmp_path)
    assert any("undefinedFunction" in error for error in found["errors"])
    assert console_errors(found["log"])


def test_chromium_draws_every_chart_with_no_error_offline(report: Path, tmp_path: Path) -> None:
    page = probed_copy(report)
    found = probe(page, tmp_path)
    assert found["errors"] == [], found["errors"]
    assert console_errors(found["log"]) == []
    charts = found["charts"]
    assert len(charts) == 10, charts  # 3 + stages + 5 waterfalls + comparison
    for chart in charts:
        assert chart["marks"] > 0, chart
        assert chart["height"] > 100, chart

    screenshot = Path(os.environ.get("TTS_OTEL_SCREENSHOT", tmp_path / "report.png"))
    height = int(max(c["top"] + c["height"] for c in charts)) + 40
    done = chromium(
        f"--screenshot={screenshot}", f"--window-size={WIDTH},{height}", page.as_uri(), tmp=tmp_path
    )
    assert screenshot.exists(), done.stderr[-3000:]
    image = read_png(screenshot)
    assert (image.width, image.height) == (WIDTH, height)
    # The page's margin is white: a decoder that garbled the image would fail here.
    assert image.pixels[:10, :10].min() == 255
    assert image.drawn(0, 0, 20, image.height) == 0
    assert image.drawn(0, 0, image.width, image.height) > 20_000, "the screenshot is blank"
    for chart in charts:
        box = (
            int(chart["left"]),
            int(chart["top"]),
            int(chart["left"] + chart["width"]),
            int(chart["top"] + chart["height"]),
        )
        assert image.drawn(*box) > 300, f"nothing drawn in the chart at {box}"


def test_a_generator_over_many_spans_keeps_bounded_state(tmp_path: Path) -> None:
    """Consumed once, as it streams; the page stays the same size whatever the span count."""
    sizes = []
    for count in (2_000, 8_000):
        consumed = 0

        def counted(n: int = count) -> Iterator[SpanRecord]:
            nonlocal consumed
            for span in synthetic_spans(n):
                consumed += 1
                yield span

        path = tmp_path / f"{count}.html"
        write_html(path, requests_of(counted()))
        assert consumed == count * 5
        sizes.append(path.stat().st_size)
    assert sizes[1] < sizes[0] * 1.1, sizes


def test_the_slowest_requests_are_the_slowest(tmp_path: Path) -> None:
    spans = list(synthetic_spans(300))
    roots = sorted(
        (s for s in spans if s.name == semconv.SPAN_SYNTHESIZE),
        key=lambda s: s.end_ns - s.start_ns,
        reverse=True,
    )
    path = tmp_path / "slow.html"
    write_html(path, requests_of(spans))
    text = path.read_text(encoding="utf-8")
    for root in roots[:5]:
        assert f"trace {root.trace_id}" in text
    assert f"trace {roots[5].trace_id}" not in text


def test_real_spans_from_the_reference_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tts_otel.read.records import from_sdk
    from tts_otel.reference import TEXTS, ReferencePipeline
    from tts_otel.testing import capture

    with capture() as captured:
        pipeline = ReferencePipeline(flow_steps=1)
        for text in TEXTS[:3]:
            pipeline.synthesize(text)
        spans = captured.spans()
    path = tmp_path / "real.html"
    write_html(path, requests_of(from_sdk(spans)))
    text = path.read_text(encoding="utf-8")
    assert "3 requests (0 failed)" in text
    assert "Latency by text length bin" in text
    assert "Slowest requests" in text


def test_without_plotly_the_error_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib; sys.modules['plotly'] = None\n"
        "from tts_otel.read.html import write_html\n"
        "write_html(pathlib.Path(sys.argv[1]), [])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.html")], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert MissingExtraError.__name__ in done.stderr
    assert "pip install 'tts-otel[html]'" in done.stderr
