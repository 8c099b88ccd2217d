"""The example service that is not GLM-TTS (examples/espeak_service.py): espeak-ng, a small
real TTS engine, instrumented through the public API, run as a user runs it. Every number
is checked against the WAV files it wrote."""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tts_otel import semconv
from tts_otel.read.records import from_otlp_json

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "espeak_service.py"
TEXTS = ["Hello there, this is a test.", "The second request is a  little longer\nthan the first."]


def test_the_espeak_example_reports_the_audio_it_wrote(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run `make services`")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), *TEXTS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    spans = list(from_otlp_json(out / "traces.jsonl"))
    requests = sorted(
        (s for s in spans if s.name == semconv.SPAN_SYNTHESIZE), key=lambda s: s.start_ns
    )
    assert len(requests) == len(TEXTS)
    for index, (request, text) in enumerate(zip(requests, TEXTS, strict=True)):
        with wave.open(str(out / f"request-{index}.wav")) as audio:
            seconds = audio.getnframes() / audio.getframerate()
        assert seconds > 0.5
        assert request.attributes[semconv.ATTR_AUDIO_DURATION] == seconds
        assert request.attributes[semconv.ATTR_TEXT_CHARACTERS] == len(text)
        assert semconv.ATTR_TEXT not in request.attributes  # private by default
        stages = [s.name for s in spans if s.parent_id == request.span_id]
        assert sorted(stages) == ["tts.decoding", "tts.synthesis", "tts.text_normalization"]
    report = subprocess.run(
        [str(Path(sys.executable).parent / "tts-otel"), "report", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"requests {len(TEXTS)} (errors 0)" in report
