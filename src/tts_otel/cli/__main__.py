"""``python -m tts_otel.cli``: the ``tts-otel`` command."""

from tts_otel.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
