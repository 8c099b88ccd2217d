"""Stand-in for GLM-TTS's Token2Wav: flow then vocoder, whole or block by block."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy
import torch

from utils.hift_util import load_hift
from utils.vocos_util import load_vocos_jit


class Token2Wav:
    def __init__(
        self, flow: Any, sample_rate: int = 24000, device: str = "cuda", ckpt_path: str = ""
    ):
        self.device = device
        self.flow = flow
        self.input_frame_rate = flow.input_frame_rate
        if sample_rate == 32000:
            self.hop_size, self.sample_rate = 640, 32000
            self.vocoder: Any = load_vocos_jit(device, ckpt_path)
        elif sample_rate == 24000:
            self.hop_size, self.sample_rate = 480, 24000
            self.vocoder = load_hift(device, ckpt_path=ckpt_path)
        else:
            raise ValueError(f"Unsupported sample_rate: {sample_rate}")

    def token2wav_stream(
        self,
        syn_token: list[int],
        block_sizes: list[int] = [25, 50, 200],  # noqa: B006 - GLM-TTS's signature
        look_future_sizes: list[int] = [12, 25, 100],  # noqa: B006
        fade_sec: float = 0.1,
        embedding: torch.Tensor | None = None,
        prompt_token_list: torch.Tensor | None = None,
        prompt_feat_td: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[float], list[float], list[numpy.ndarray]]:
        """Streaming simulated in one call, as GLM-TTS does: per block, flow and vocoder
        run on the whole prefix so far (each output overlaps the one before); the part
        that later blocks cannot change is playable, its tail cross-faded into the next.
        Everything is returned at the end, with the list of playable chunks."""
        if not isinstance(syn_token, list):
            raise TypeError("syn_token must be a list.")
        if prompt_token_list is None or len(prompt_token_list) == 0:
            raise ValueError("prompt_token_list cannot be empty.")
        blocks = list(self.iterate_list_in_chunks(syn_token, block_sizes))
        chunks: list[numpy.ndarray] = []
        played = 0  # samples of the growing output already handed out
        fade_out: numpy.ndarray | None = None
        prefix: list[int] = []
        cache = None
        for index, block in enumerate(blocks):
            prefix += block
            mel, cache = self.flow.inference_with_cache(
                token=torch.tensor([prefix]),
                prompt_token=prompt_token_list,
                prompt_feat=prompt_feat_td,
                embedding=embedding,
                last_step_cache=cache,
                is_causal=True,
                block_pattern=[len(prompt_token_list), *block_sizes],
            )
            wav = self.vocoder(mel).reshape(-1).numpy().copy()
            look_future = look_future_sizes[min(index, len(look_future_sizes) - 1)]
            held = int(self.sample_rate * look_future / self.input_frame_rate)
            overlap = held + int(self.sample_rate * fade_sec)
            new = wav[played:]
            if fade_out is not None:
                fade = min(len(fade_out), len(new))
                ramp = numpy.linspace(0.0, 1.0, fade)
                new[:fade] = fade_out[:fade] * (1 - ramp) + new[:fade] * ramp
            if index == len(blocks) - 1:
                chunks.append(new)
                break
            playable = max(0, len(new) - overlap)
            chunks.append(new[:playable])
            played += playable
            fade_out = new[playable : len(new) - held] if held else new[playable:]
        seconds = [len(chunk) / self.sample_rate for chunk in chunks]
        full = torch.from_numpy(numpy.concatenate(chunks))[None] if chunks else torch.zeros(1, 0)
        return full, seconds, [], chunks

    def token2wav_with_cache(
        self,
        token_bt: list[int] | torch.Tensor,
        n_timesteps: int = 10,
        prompt_token: torch.Tensor = torch.zeros(1, 0, dtype=torch.int32),  # noqa: B008
        prompt_feat: torch.Tensor = torch.zeros(1, 0, 80),  # noqa: B008
        embedding: torch.Tensor = torch.zeros(1, 192),  # noqa: B008
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(token_bt, list):
            token_bt = torch.tensor(token_bt, dtype=torch.long)[None]
        mel, _ = self.flow.inference_with_cache(
            token=token_bt,
            prompt_token=prompt_token,
            prompt_feat=prompt_feat,
            embedding=embedding,
            n_timesteps=n_timesteps,
        )
        return self.vocoder(mel).reshape(1, -1), mel

    def iterate_list_in_chunks(self, lst: list[int], chunk_sizes: list[int]) -> Iterator[list[int]]:
        pointer, index = 0, 0
        while pointer < len(lst):
            size = chunk_sizes[min(index, len(chunk_sizes) - 1)]
            yield lst[pointer : pointer + size]
            pointer, index = pointer + size, index + 1
