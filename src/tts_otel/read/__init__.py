"""The read side: spans from OTLP JSON files or InfluxDB (InfluxQL or Flux), assembled into
requests as they stream, then summarised (``report``), drawn (``trace``) or compared
(``compare``).

Nothing is imported here: a module of the read side is imported alone, with only what it needs.
"""
