"""Stand-in for GLM-TTS's tools/flow_reconstruct.py: audio resynthesised from speech tokens.

Like the real script: it loads the front end and the flow model only (no LLM), extracts the
prompt's speech tokens, features and speaker embedding once (`process_prompt`, which raises
FileNotFoundError for a missing prompt), then for every `.npy` token file in `--input_dir`
calls `Token2Wav.token2wav_with_cache` under `torch.no_grad()` and writes a wav to
`--output_dir`. Differences: the stand-in flow model needs no checkpoint, and wav files are
written with `wave` instead of torchaudio.
"""

from __future__ import annotations

import argparse
import glob
import os
from typing import Any

import numpy as np
import torch
from flow.flow import Flow
from glmtts_inference import DEVICE, load_frontends, save_wav
from utils import tts_model_util


def load_flow_only(sample_rate: int = 24000) -> tuple[Any, Any]:
    frontend, _ = load_frontends(sample_rate=sample_rate, use_phoneme=False)
    token2wav = tts_model_util.Token2Wav(Flow(), sample_rate=sample_rate, device=DEVICE)
    return frontend, token2wav


def process_prompt(frontend: Any, prompt_wav_path: str, sample_rate: int = 24000) -> Any:
    if not os.path.exists(prompt_wav_path):
        raise FileNotFoundError(f"Prompt audio not found: {prompt_wav_path}")
    prompt_token = frontend._extract_speech_token([prompt_wav_path])
    embedding = frontend._extract_spk_embedding(prompt_wav_path)
    prompt_feat = frontend._extract_speech_feat(prompt_wav_path, sample_rate=sample_rate)
    return prompt_token, prompt_feat, embedding


def reconstruct_audio(token2wav: Any, tokens: list[int], prompt_data: Any) -> torch.Tensor:
    prompt_token, prompt_feat, embedding = prompt_data
    with torch.no_grad():
        wav, _ = token2wav.token2wav_with_cache(
            tokens, prompt_token=prompt_token, prompt_feat=prompt_feat, embedding=embedding
        )
    return wav.detach().cpu()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description="GLMTTS Flow Reconstruction Script (stand-in)")
    parser.add_argument("--input_dir", "-i", type=str, required=True)
    parser.add_argument("--output_dir", "-o", type=str, default=None)
    parser.add_argument("--prompt_wav", "-p", type=str, required=True)
    parser.add_argument("--sample_rate", type=int, default=24000)
    args = parser.parse_args()
    output_dir = args.output_dir or os.path.join(args.input_dir, "_flow_recon")
    os.makedirs(output_dir, exist_ok=True)
    frontend, token2wav = load_flow_only(sample_rate=args.sample_rate)
    try:
        prompt_data = process_prompt(frontend, args.prompt_wav, sample_rate=args.sample_rate)
    except Exception as e:
        print(f"[ERROR] Failed to process prompt: {e}")
        return
    for file_path in sorted(glob.glob(os.path.join(args.input_dir, "*.npy"))):
        tokens = [int(t) for t in np.load(file_path).tolist() if t >= 0]
        if not tokens:
            continue
        waveform = reconstruct_audio(token2wav, tokens, prompt_data)
        name = os.path.splitext(os.path.basename(file_path))[0] + ".wav"
        save_wav(os.path.join(output_dir, name), waveform, args.sample_rate)


if __name__ == "__main__":
    main()
