"""Small torch networks shaped like GLM-TTS's stages, with random weights.

They do the same *kind* of work as the real models (filterbank + encoder,
autoregressive decoding with or without a KV cache, flow matching, an
inverse STFT) so that stage timings behave like a real service's. The
weights are random: the audio they produce is noise.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SPEAKER_DIM = 192
MEL_BINS = 80
SPEECH_VOCAB = 1024
TEXT_VOCAB = 4096
TOKENS_PER_SECOND = 25
MEL_FRAMES_PER_SECOND = 50
PROMPT_SAMPLE_RATE = 16_000


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1)."""

    def hz_to_mel(hz: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: Tensor) -> Tensor:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    top = hz_to_mel(torch.tensor(sample_rate / 2))
    edges = mel_to_hz(torch.linspace(0.0, float(top), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def prompt_waveform(seconds: float, seed: int) -> Tensor:
    """A voice-like prompt: a gliding harmonic tone with noise, at 16 kHz."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * PROMPT_SAMPLE_RATE)) / PROMPT_SAMPLE_RATE
    pitch = 120.0 + 30.0 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / PROMPT_SAMPLE_RATE
    voice = sum(torch.sin(k * phase) / k for k in range(1, 8))
    noise = 0.05 * torch.randn(t.shape, generator=generator)
    return (0.3 * voice + noise).float()


class SpeakerEncoder(nn.Module):
    """Log-mel filterbank features, a small conv net, mean+std pooling, a 192-d vector."""

    filters: Tensor
    window: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.n_fft = 400
        self.register_buffer("filters", mel_filterbank(self.n_fft, MEL_BINS, PROMPT_SAMPLE_RATE))
        self.register_buffer("window", torch.hann_window(self.n_fft))
        self.convs = nn.Sequential(
            nn.Conv1d(MEL_BINS, 256, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(256, 256, 3, padding=1),
            nn.ReLU(),
        )
        self.project = nn.Linear(512, SPEAKER_DIM)

    def forward(self, waveform: Tensor) -> Tensor:
        spectrum = torch.stft(
            waveform, self.n_fft, hop_length=160, window=self.window, return_complex=True
        )
        features = torch.log(self.filters @ spectrum.abs().pow(2) + 1e-6)
        hidden = self.convs(features.unsqueeze(0))
        pooled = torch.cat([hidden.mean(-1), hidden.std(-1)], dim=-1)
        return F.normalize(self.project(pooled), dim=-1)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, cache: list[Tensor] | None) -> tuple[Tensor, list[Tensor]]:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        # With a cache, the one new query may see every cached key: no mask needed.
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x)), [k, v]


class SpeechLM(nn.Module):
    """A decoder-only transformer generating speech tokens after text tokens.

    ``generate(kv_cache=False)`` recomputes the whole prefix at every step,
    as a server without a KV cache does; the extra cost is real compute.
    """

    def __init__(self, dim: int = 128, layers: int = 2, heads: int = 4, max_len: int = 4096):
        super().__init__()
        self.text_embedding = nn.Embedding(TEXT_VOCAB, dim)
        self.speech_embedding = nn.Embedding(SPEECH_VOCAB, dim)
        self.speaker = nn.Linear(SPEAKER_DIM, dim)
        self.position = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, SPEECH_VOCAB)

    def _run(
        self, x: Tensor, start: int, caches: list[list[Tensor]] | None
    ) -> tuple[Tensor, list[list[Tensor]]]:
        x = x + self.position(torch.arange(start, start + x.shape[1]))
        new_caches = []
        for index, block in enumerate(self.blocks):
            x, cache = block(x, caches[index] if caches is not None else None)
            new_caches.append(cache)
        return self.head(self.norm(x[:, -1])), new_caches

    @torch.inference_mode()
    def generate(
        self,
        text_tokens: Tensor,
        speaker: Tensor,
        count: int,
        kv_cache: bool,
        generator: torch.Generator,
        top_k: int = 50,
    ) -> Tensor:
        prefix = torch.cat([self.speaker(speaker)[:, None], self.text_embedding(text_tokens)], 1)
        logits, caches = self._run(prefix, 0, None)
        sequence, length = prefix, prefix.shape[1]
        tokens: list[Tensor] = []
        for _ in range(count):
            top = torch.topk(logits, top_k, dim=-1)
            choice = torch.multinomial(F.softmax(top.values, dim=-1), 1, generator=generator)
            token = top.indices.gather(-1, choice)
            tokens.append(token)
            step = self.speech_embedding(token)
            if kv_cache:
                logits, caches = self._run(step, length, caches)
            else:
                sequence = torch.cat([sequence, step], 1)
                logits, _ = self._run(sequence, 0, None)
            length += 1
        return torch.cat(tokens, dim=-1)


class FlowMatcher(nn.Module):
    """Tokens + speaker -> 80-bin mel by integrating a learned velocity field in N steps."""

    def __init__(self, dim: int = 192) -> None:
        super().__init__()
        self.tokens = nn.Embedding(SPEECH_VOCAB, dim)
        self.speaker = nn.Linear(SPEAKER_DIM, dim)
        self.velocity = nn.Sequential(
            nn.Conv1d(MEL_BINS + dim + 1, dim, 3, padding=1),
            nn.SiLU(),
            nn.Conv1d(dim, dim, 3, padding=1),
            nn.SiLU(),
            nn.Conv1d(dim, MEL_BINS, 3, padding=1),
        )

    @torch.inference_mode()
    def forward(self, tokens: Tensor, speaker: Tensor, steps: int, generator: Any) -> Tensor:
        # 25 tokens/s -> 50 mel frames/s.
        condition = self.tokens(tokens).repeat_interleave(2, dim=1) + self.speaker(speaker)[:, None]
        condition = condition.transpose(1, 2)
        frames = condition.shape[-1]
        mel = torch.randn((1, MEL_BINS, frames), generator=generator)
        for step in range(steps):
            t = torch.full((1, 1, frames), step / steps)
            mel = mel + self.velocity(torch.cat([mel, condition, t], dim=1)) / steps
        return mel


class Vocoder(nn.Module):
    """Mel -> magnitude and phase -> waveform by inverse STFT (hop 480 at 24 kHz, 640 at 32 kHz)."""

    window: Tensor

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.hop = sample_rate // MEL_FRAMES_PER_SECOND
        self.n_fft = 2 * self.hop
        bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft))
        self.net = nn.Sequential(
            nn.Conv1d(MEL_BINS, 256, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv1d(256, 2 * bins, 3, padding=1),
        )

    @torch.inference_mode()
    def forward(self, mel: Tensor) -> Tensor:
        magnitude, phase = self.net(mel).chunk(2, dim=1)
        spectrum = torch.polar(torch.exp(magnitude.clamp(max=4.0)), phase)
        return torch.istft(
            spectrum,
            self.n_fft,
            hop_length=self.hop,
            window=self.window,
            length=mel.shape[-1] * self.hop,
        )[0]
