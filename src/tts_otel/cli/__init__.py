"""The ``tts-otel`` command and what it reads with.

- :mod:`.command`: the command line (``demo``, ``trace``, ``report``, ``compare``,
  ``doctor``); :func:`main` runs it.
- :mod:`.read`: the read side: spans from OTLP JSON files or InfluxDB, assembled into
  requests, summarised, drawn as waterfalls, compared.
- :mod:`.html_report`: ``report --html``, one offline page of charts.
- :mod:`.doctor`: is the configured InfluxDB ready for tts-otel?

Nothing is imported here at import, so that importing one reader
(``tts_otel.cli.read.records``) does not bring argparse and the rest of the command.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tts-otel`` with ``argv`` (default: the process's arguments); the exit status."""
    from tts_otel.cli.command import main as run

    return run(argv)
