"""``import tts_otel`` against the OpenTelemetry SDK's own import, side by side.

Each sample is a fresh interpreter that times one import statement; the two
statements alternate so both see the same machine. Prints the medians, their
ratio and the milliseconds tts-otel adds (target: at most 20 ms).

    .venv/bin/python benchmarks/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
from pathlib import Path

SDK = "import opentelemetry.sdk.trace, opentelemetry.sdk.metrics"
TTS_OTEL = "import tts_otel"


def _seconds(statement: str) -> float:
    timed = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    # pip compiles installed packages (the SDK) to bytecode; a source checkout under
    # PYTHONDONTWRITEBYTECODE never is, and would pay the compiler on every import.
    source = Path(__file__).resolve().parent.parent / "src" / "tts_otel"
    compileall.compile_dir(source, quiet=1)
    for statement in (SDK, TTS_OTEL):  # warm the file cache for both
        _seconds(statement)
    sdk, ours = [], []
    for _ in range(runs):
        sdk.append(_seconds(SDK))
        ours.append(_seconds(TTS_OTEL))
    sdk_ms, ours_ms = statistics.median(sdk) * 1e3, statistics.median(ours) * 1e3
    print(f"median over {runs} runs: SDK {sdk_ms:.1f} ms, tts_otel {ours_ms:.1f} ms")
    print(f"import_ratio={ours_ms / sdk_ms:.2f}")
    print(f"import_added_ms={ours_ms - sdk_ms:.1f}")


if __name__ == "__main__":
    main()
