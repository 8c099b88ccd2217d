"""Stand-in for GLM-TTS's seed_util: "seed everything", as GLM-TTS does before every segment."""

from __future__ import annotations

import random

import numpy
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
