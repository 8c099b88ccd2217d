"""``python -m tts_otel.cli``: the ``tts-otel`` command."""

from tts_otel.cli.main import main

raise SystemExit(main())
