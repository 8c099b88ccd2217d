"""Stand-in for GLM-TTS's glmtts_inference.py, with the behaviours its entry points really have.

- `generate_long` seeds `random`, numpy and torch before every segment (`seed_util.set_seed`).
- `jsonl_generate` normalises the prompt and the text, tokenises the prompt and extracts the
  prompt's speech tokens, features and speaker embedding, and only then calls `generate_long`;
  it logs a failing item and goes on to the next.
- Run as a script (`python glmtts_inference.py --data example_zh`), this file is `__main__`:
  `jsonl_generate` then calls `__main__.generate_long`.
Differences, so the tests need no weights: `load_models` builds the tiny stand-in models
(waiting TTS_STANDIN_LOAD_SECONDS, default 0.3, for the weights' loading), prompt audio is
read and seeds random features, wav files are written with `wave`, and outputs go under the
working directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import wave
from typing import Any

import torch
from cosyvoice.cli.frontend import TextFrontEnd, TTSFrontEnd
from flow.flow import Flow
from llm.glmtts import GLMTTS
from utils import file_utils, seed_util, tts_model_util

DEVICE = torch.device("cpu")

logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")


def load_frontends(sample_rate: int = 24000, use_phoneme: bool = False) -> tuple[Any, Any]:
    if sample_rate not in (24000, 32000):
        raise ValueError(f"Unsupported sampling_rate: {sample_rate}")
    frontend = TTSFrontEnd(
        lambda text: [ord(c) % 1000 for c in text],
        None,
        lambda wav: torch.zeros(1, 150, 80),
        "frontend/campplus.onnx",
        "",
        DEVICE,
    )
    return frontend, TextFrontEnd(use_phoneme)


def _token_len(token: torch.Tensor) -> torch.Tensor:
    assert token.ndim == 2
    assert token.shape[0] == 1
    return torch.tensor([token.shape[1]], dtype=torch.int32)


def local_llm_forward(
    llm: Any,
    prompt_text_token: torch.Tensor,
    tts_text_token: torch.Tensor,
    prompt_speech_token: torch.Tensor,
    beam_size: int = 1,
    sampling: int = 25,
    sample_method: str = "ras",
) -> list[int]:
    tokens = llm.inference(
        text=tts_text_token,
        text_len=_token_len(tts_text_token),
        prompt_text=prompt_text_token,
        prompt_text_len=_token_len(prompt_text_token),
        prompt_speech_token=prompt_speech_token,
        prompt_speech_token_len=_token_len(prompt_speech_token),
        beam_size=beam_size,
        sampling=sampling,
        sample_method=sample_method,
        spk=None,
    )
    return tokens[0].tolist()  # type: ignore[no-any-return]


def local_flow_forward(
    flow: Any, token_list: list[int], prompt_speech_tokens: Any, speech_feat: Any, embedding: Any
) -> tuple[torch.Tensor, Any]:
    wav, mel = flow.token2wav_with_cache(
        token_list, prompt_token=prompt_speech_tokens, prompt_feat=speech_feat, embedding=embedding
    )
    return wav.detach().cpu(), mel


def generate_long(
    frontend: Any,
    text_frontend: Any,
    llm: Any,
    flow: Any,
    text_info: list[str],
    cache: dict[str, Any],
    device: Any,
    embedding: torch.Tensor,
    seed: int = 0,
    sample_method: str = "ras",
    flow_prompt_token: Any = None,
    speech_feat: Any = None,
    local_llm_forward: Any = local_llm_forward,
    local_flow_forward: Any = local_flow_forward,
    use_phoneme: bool = False,
) -> tuple[torch.Tensor, Any, list[int], dict[str, Any]]:
    outputs, mels, tokens_out = [], [], []
    text_tn = {"uttid": text_info[0], "syn_text": text_info[1], "syn_text_tn": []}
    for segment in text_frontend.split_by_len(text_info[1]):
        seed_util.set_seed(seed)
        normalized = text_frontend.text_normalize(segment)
        text_tn["syn_text_tn"].append(normalized)
        if use_phoneme:
            normalized = text_frontend.g2p_infer(normalized)
        text_token = frontend._extract_text_token(normalized)
        tokens = local_llm_forward(
            llm=llm,
            prompt_text_token=cache["cache_text_token"][0],
            tts_text_token=text_token,
            prompt_speech_token=torch.tensor([cache["cache_speech_token"][0]], dtype=torch.int32),
            sample_method=sample_method,
        )
        tokens_out.extend(tokens)
        wav, mel = local_flow_forward(
            flow=flow,
            token_list=tokens,
            prompt_speech_tokens=flow_prompt_token,
            speech_feat=speech_feat,
            embedding=embedding,
        )
        if cache is not None:
            cache["cache_text"].append(normalized)
            cache["cache_text_token"].append(text_token)
            cache["cache_speech_token"].append(tokens)
        outputs.append(wav)
        mels.append(mel)
    return torch.concat(outputs, dim=1), torch.concat(mels, dim=-1), tokens_out, text_tn


def save_wav(path: str, wav: torch.Tensor, sample_rate: int) -> None:
    samples = (wav.clamp(-1, 1) * 32767).to(torch.int16).reshape(-1)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(bytes(samples.numpy().tobytes()))


def jsonl_generate(
    data_name: str,
    folder_path: str,
    sample_rate: int = 24000,
    seed: int = 0,
    use_cache: bool = True,
    use_phoneme: bool = False,
) -> None:
    item_list = file_utils.get_jsonl(os.path.join("examples", data_name + ".jsonl"))
    with open(os.path.join(folder_path, "text_compare.jsonl"), "w") as f_out:
        for item in item_list:
            try:
                uttid = item["uttid"]
                prompt_text = text_frontend.text_normalize(item["prompt_text"])
                synth_text = text_frontend.text_normalize(item["syn_text"])
                prompt_text_token = frontend._extract_text_token(prompt_text + " ")
                prompt_speech_token = frontend._extract_speech_token([item["prompt_speech"]])
                speech_feat = frontend._extract_speech_feat(
                    item["prompt_speech"], sample_rate=sample_rate
                )
                embedding = frontend._extract_spk_embedding(item["prompt_speech"])
                cache_speech_token = [prompt_speech_token.squeeze().tolist()]
                flow_prompt_token = torch.tensor(cache_speech_token, dtype=torch.int32)
                cache = {
                    "cache_text": [prompt_text],
                    "cache_text_token": [prompt_text_token],
                    "cache_speech_token": cache_speech_token,
                    "use_cache": use_cache,
                }
                tts_speech, _, _, text_tn_dict = generate_long(
                    frontend=frontend,
                    text_frontend=text_frontend,
                    llm=llm,
                    flow=flow,
                    text_info=[uttid, synth_text],
                    cache=cache,
                    embedding=embedding,
                    seed=seed,
                    flow_prompt_token=flow_prompt_token,
                    speech_feat=speech_feat,
                    device=DEVICE,
                    use_phoneme=use_phoneme,
                )
                f_out.write(json.dumps(text_tn_dict, ensure_ascii=False) + "\n")
                save_wav(os.path.join(folder_path, f"{uttid}.wav"), tts_speech, sample_rate)
            except Exception as e:
                logging.error(f"Error processing {item.get('uttid', 'unknown')}: {e}")


def load_models(use_phoneme: bool = False, sample_rate: int = 24000) -> tuple[Any, ...]:
    # Reading GLM-TTS's weights takes seconds; the stand-in waits a little instead.
    time.sleep(float(os.environ.get("TTS_STANDIN_LOAD_SECONDS", "0.3")))
    frontend, text_frontend = load_frontends(sample_rate, use_phoneme)
    token2wav = tts_model_util.Token2Wav(Flow(), sample_rate=sample_rate, device="cpu")
    return frontend, text_frontend, None, GLMTTS(), token2wav


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="GLM-TTS Inference Script (stand-in)")
    parser.add_argument("--data", default="example_zh", type=str)
    parser.add_argument("--exp_name", default="_test", type=str)
    parser.add_argument("--use_cache", action="store_true", default=True)
    parser.add_argument("--use_phoneme", action="store_true", default=False)
    parser.add_argument("--sample_rate", type=int, default=24000)
    args = parser.parse_args()

    frontend, text_frontend, speech_tokenizer, llm, flow = load_models(
        use_phoneme=args.use_phoneme, sample_rate=args.sample_rate
    )
    folder_path = os.path.join("outputs", f"pretrain{args.exp_name}", args.data)
    os.makedirs(folder_path, exist_ok=True)
    jsonl_generate(
        args.data,
        folder_path,
        sample_rate=args.sample_rate,
        use_cache=args.use_cache,
        use_phoneme=args.use_phoneme,
    )
