"""A small real TTS service instrumented with tts-otel: espeak-ng, in three stages.

    python examples/espeak_service.py --out tts-otel-out "Hello there." "Second request."
    tts-otel report tts-otel-out
    tts-otel trace tts-otel-out --last 1

Each text is one request: text normalisation (in Python), synthesis (the espeak-ng
program, through a pipe) and decoding of the WAV it writes. The audio each request
reports is what the WAV holds, and the WAVs are written next to the telemetry, so every
number can be checked against the file. Needs espeak-ng (Debian: ``apt-get install
espeak-ng``) and tts-otel's ``otlp`` extra for the file exporter.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import unicodedata
import wave
from pathlib import Path

import tts_otel

MODEL = "espeak-ng"


def normalize(text: str) -> str:
    """NFKC, whitespace folded: what espeak-ng is given."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def speak(text: str, voice: str, executable: str) -> bytes:
    """The WAV espeak-ng writes for ``text``."""
    done = subprocess.run(
        [executable, "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=60
    )
    return done.stdout


def synthesize(text: str, voice: str, executable: str, out: Path, name: str) -> Path:
    with tts_otel.synthesis(model=MODEL, model_version=voice, text=text) as request:
        with request.stage("text_normalization"):
            spoken = normalize(text)
        with request.stage("synthesis"):
            data = speak(spoken, voice, executable)
        with request.stage("decoding"):
            with wave.open(io.BytesIO(data)) as audio:
                # Written to a pipe, the header cannot say how long the data is (it says
                # 2**31 - 1 frames): the audio is what was written.
                rate, width = audio.getframerate(), audio.getsampwidth() * audio.getnchannels()
                samples = audio.readframes(audio.getnframes())
                frames = len(samples) // width
        request.audio(samples=frames, sample_rate=rate)
    path = out / f"{name}.wav"
    with wave.open(str(path), "wb") as copy:
        copy.setnchannels(1)
        copy.setsampwidth(2)
        copy.setframerate(rate)
        copy.writeframes(samples)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="+", help="one request per text")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("tts-otel-out"),
        help="folder for the telemetry (traces.jsonl, metrics.jsonl) and WAVs",
    )
    parser.add_argument("--voice", default="en", help="espeak-ng voice (default: en)")
    args = parser.parse_args()
    executable = shutil.which("espeak-ng")
    if executable is None:
        parser.error("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tts_otel.configure(service_name="espeak-tts", exporters="file", output_dir=args.out):
        for index, text in enumerate(args.texts):
            path = synthesize(text, args.voice, executable, args.out, f"request-{index}")
            print(path)


if __name__ == "__main__":
    main()
