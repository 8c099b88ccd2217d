"""Stand-in for GLM-TTS's file_utils: the jsonl reader its script uses."""

from __future__ import annotations

import json
from typing import Any


def get_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
