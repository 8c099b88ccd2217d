"""Stand-in for the HiFT vocoder used at 24 kHz (hop 480)."""

from __future__ import annotations

import torch


class HiFTInference:
    hop = 480

    def __init__(self, device: str = "cpu") -> None:
        torch.manual_seed(4)
        self.net = torch.nn.Conv1d(80, self.hop, 1)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            frames = self.net(mel)  # (B, hop, T): one hop of samples per frame
        return frames.transpose(1, 2).reshape(mel.shape[0], 1, -1)


def load_hift(
    device: str = "cuda", load_only_nsf: bool = False, ckpt_path: str = ""
) -> HiFTInference:
    return HiFTInference(device)
