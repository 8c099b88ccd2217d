"""The ``tts-otel`` command: arguments and printing; the reading itself is :mod:`tts_otel.read`.

- :mod:`.commands`: the command line (``demo``, ``trace``, ``report``, ``compare``, ``doctor``).
- :mod:`.reading`: the arguments of ``trace``, ``report`` and ``compare`` and what they print.
- :mod:`.doctor`: is the configured InfluxDB ready for tts-otel?

Nothing is imported here at import, so that ``tts-otel --help`` and a library user of
:mod:`tts_otel.read` pay only for what they use.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tts-otel`` with ``argv`` (default: the process's arguments); the exit status."""
    from tts_otel.cli.commands import main as run

    return run(argv)
