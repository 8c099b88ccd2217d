"""Stand-in for GLM-TTS's web UI handler (tools/gradio_app.py), without gradio.

`run_inference` keeps the real handler's order: normalise prompt and input text, tokenise the
prompt, extract the prompt's speech tokens, features and speaker embedding, then call
`generate_long` (imported with `from glmtts_inference import ...`). Gradio runs each click in a
worker thread with a copy of the server's context; `python -m tools.gradio_app --requests N`
serves N clicks that way (no UI here) and exits.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextvars
import logging
from typing import Any

import torch
from glmtts_inference import DEVICE, generate_long, load_models


class Error(Exception):
    """Stands in for gr.Error, which the real handler raises to the browser."""


MODEL_CACHE: dict[str, Any] = {"loaded": False, "sample_rate": None, "components": None}


def get_models(use_phoneme: bool = False, sample_rate: int = 24000) -> Any:
    if MODEL_CACHE["loaded"] and MODEL_CACHE["sample_rate"] == sample_rate:
        return MODEL_CACHE["components"]
    MODEL_CACHE["components"] = load_models(use_phoneme=use_phoneme, sample_rate=sample_rate)
    MODEL_CACHE["sample_rate"] = sample_rate
    MODEL_CACHE["loaded"] = True
    return MODEL_CACHE["components"]


def run_inference(prompt_text: str, prompt_audio_path: str, input_text: str, seed: int,
                  sample_rate: int, use_cache: bool = True) -> tuple[int, Any]:  # fmt: skip
    if not input_text:
        raise Error("Please provide text to synthesize.")
    if not prompt_audio_path:
        raise Error("Please upload a prompt audio file.")
    try:
        frontend, text_frontend, _, llm, flow = get_models(
            use_phoneme=True, sample_rate=sample_rate
        )
        norm_prompt_text = text_frontend.text_normalize(prompt_text) + " "
        norm_input_text = text_frontend.text_normalize(input_text)
        prompt_text_token = frontend._extract_text_token(norm_prompt_text)
        prompt_speech_token = frontend._extract_speech_token([prompt_audio_path])
        speech_feat = frontend._extract_speech_feat(prompt_audio_path, sample_rate=sample_rate)
        embedding = frontend._extract_spk_embedding(prompt_audio_path)
        cache_speech_token_list = [prompt_speech_token.squeeze().tolist()]
        flow_prompt_token = torch.tensor(cache_speech_token_list, dtype=torch.int32)
        cache = {
            "cache_text": [norm_prompt_text],
            "cache_text_token": [prompt_text_token],
            "cache_speech_token": cache_speech_token_list,
            "use_cache": use_cache,
        }
        tts_speech, _, _, _ = generate_long(
            frontend=frontend, text_frontend=text_frontend, llm=llm, flow=flow,
            text_info=["", norm_input_text], cache=cache, embedding=embedding,
            flow_prompt_token=flow_prompt_token, speech_feat=speech_feat, sample_method="ras",
            seed=seed, device=DEVICE, use_phoneme=False,
        )  # fmt: skip
        audio = (tts_speech.squeeze().clamp(-1.0, 1.0) * 32767.0).to(torch.int16)
        return sample_rate, audio
    except Exception as e:
        logging.error(f"Inference failed: {e}")
        raise Error(f"Inference failed: {e!s}") from e


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="GLM-TTS web UI handler (stand-in)")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    clicks = [
        ("他当时还跟线下其他的站姐吵架。", "examples/prompt/jiayan_zh.wav",
         "我最爱吃人参果，你喜欢吃吗？" * (1 + i % 3), 42, 24000)
        for i in range(args.requests)
    ]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        done = [pool.submit(contextvars.copy_context().run, run_inference, *c) for c in clicks]
        for future in done:
            future.result()
