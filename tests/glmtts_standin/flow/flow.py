"""Stand-in for GLM-TTS's flow-matching decoder: tokens to an 80-bin mel in N steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Flow(nn.Module):
    def __init__(self, input_frame_rate: float = 25, vocab: int = 1000) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.input_frame_rate = input_frame_rate
        self.mel_framerate = 50
        self.embedding = nn.Embedding(vocab, 80)
        self.velocity = nn.Conv1d(80, 80, 3, padding=1)

    @torch.no_grad()
    def inference_with_cache(
        self,
        token: torch.Tensor,
        prompt_token: torch.Tensor,
        prompt_feat: torch.Tensor,
        embedding: torch.Tensor,
        n_timesteps: int = 10,
        last_step_cache: Any = None,
        wavlm_emb_bt: Any = None,
        is_causal: bool = False,
        block_pattern: Any = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        frames = int(token.shape[-1] / self.input_frame_rate * self.mel_framerate)
        condition = self.embedding(token % 1000).repeat_interleave(2, dim=1)[:, :frames]
        mel = torch.zeros(1, 80, frames)
        for _ in range(n_timesteps):
            mel = mel + self.velocity(mel + condition.transpose(1, 2)) / n_timesteps
        return mel, {"steps": n_timesteps}
