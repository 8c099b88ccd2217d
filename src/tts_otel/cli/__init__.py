"""The ``tts-otel`` command and what it reads with.

- :mod:`.main`: the command line (``demo``, ``trace``, ``report``, ``compare``, ``doctor``).
- :mod:`.read`: the read side: spans from OTLP JSON files or InfluxDB, assembled into
  requests, summarised, drawn as waterfalls, compared.
- :mod:`.html_report`: ``report --html``, one offline page of charts.
- :mod:`.doctor`: is the configured InfluxDB ready for tts-otel?

Nothing is imported here, so that importing one reader (``tts_otel.cli.read.records``)
does not bring argparse and the rest of the command.
"""
