"""The read side: spans from OTLP JSON files or InfluxDB (InfluxQL or Flux), assembled into
requests as they stream, then summarised (``report``), drawn (``trace``) or compared
(``compare``).

Nothing is imported here, so that :mod:`tts_otel.report` can use :mod:`.stats` without a cycle.
"""
