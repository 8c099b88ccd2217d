"""Stand-in for GLM-TTS's text and speech front ends."""

from __future__ import annotations

import os
import wave
import zlib
from collections.abc import Callable
from typing import Any

import torch

from tts_otel.reference import text as rules


class TextFrontEnd:
    def __init__(self, use_phoneme: bool = False) -> None:
        self.use_phoneme = use_phoneme

    def text_normalize(self, text: str) -> str | None:
        return rules.normalize(text)

    def split_by_len(self, text: str, min_text_len: int = 30, max_text_len: int = 60) -> list[str]:
        return rules.split_segments(text, min_text_len, max_text_len)

    def g2p_infer(self, text: str) -> str:
        return " ".join(f"<{ord(c) % 100}>" for c in text)


class TTSFrontEnd:
    def __init__(
        self,
        tokenize_fn: Callable[[str], list[int]],
        speech_tokenizer: Any,
        feat_extractor: Callable[..., torch.Tensor],
        campplus_model: str,
        spk2info: str = "",
        device: Any = None,
    ) -> None:
        self.tokenize_fn = tokenize_fn
        self.speech_tokenizer = speech_tokenizer
        self.feat_extractor = feat_extractor
        self.device = device or "cpu"
        torch.manual_seed(1)
        self.speaker = torch.nn.Linear(80, 192)

    def _extract_text_token(self, text: str) -> torch.Tensor:
        return torch.tensor([self.tokenize_fn(text)], dtype=torch.long)

    def _extract_speech_token(self, path_or_tuple: Any) -> torch.Tensor:
        return torch.randint(0, 1000, (1, 75), generator=_audio(path_or_tuple))

    def _extract_spk_embedding(self, speech: str | torch.Tensor) -> torch.Tensor:
        features = (
            torch.randn(1, 300, 80, generator=_audio(speech)) if isinstance(speech, str) else speech
        )
        with torch.no_grad():
            return torch.nn.functional.normalize(self.speaker(features).mean(1), dim=-1)

    def _extract_speech_feat(self, speech: Any, sample_rate: int = 24000) -> torch.Tensor:
        return self.feat_extractor(torch.randn(1, sample_rate * 3, generator=_audio(speech)))


def _audio(path: Any) -> torch.Generator:
    """Prompt audio is read, as GLM-TTS reads it (a missing file raises FileNotFoundError, a
    file that is not audio raises too), and stands in as noise seeded by its samples: the
    global RNG untouched."""
    paths = path if isinstance(path, list | tuple) else [path]
    samples = b""
    for item in paths:
        with wave.open(os.fspath(item), "rb") as audio:
            samples += audio.readframes(audio.getnframes())
    return torch.Generator().manual_seed(zlib.crc32(samples))
