"""Stand-in for GLM-TTS's inference script: split, then per segment normalise, LLM, flow+vocoder."""

from __future__ import annotations

from typing import Any

import torch


def local_llm_forward(llm: Any, prompt_text_token: torch.Tensor, tts_text_token: torch.Tensor,
                      prompt_speech_token: torch.Tensor, beam_size: int = 1, sampling: int = 25,
                      sample_method: str = "ras") -> list[int]:  # fmt: skip
    def length(t: torch.Tensor) -> torch.Tensor:
        return torch.tensor([t.shape[1]], dtype=torch.int32)

    tokens = llm.inference(
        text=tts_text_token, text_len=length(tts_text_token), prompt_text=prompt_text_token,
        prompt_text_len=length(prompt_text_token), prompt_speech_token=prompt_speech_token,
        prompt_speech_token_len=length(prompt_speech_token), beam_size=beam_size,
        sampling=sampling, sample_method=sample_method, spk=None,
    )  # fmt: skip
    return tokens[0].tolist()  # type: ignore[no-any-return]


def local_flow_forward(flow: Any, token_list: list[int], prompt_speech_tokens: Any,
                       speech_feat: Any, embedding: Any) -> tuple[torch.Tensor, Any]:  # fmt: skip
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
    outputs, tokens_out = [], []
    for segment in text_frontend.split_by_len(text_info[1]):
        normalized = text_frontend.text_normalize(segment)
        if use_phoneme:
            normalized = text_frontend.g2p_infer(normalized)
        text_token = frontend._extract_text_token(normalized)
        tokens = local_llm_forward(
            llm=llm, prompt_text_token=cache["cache_text_token"][0], tts_text_token=text_token,
            prompt_speech_token=torch.tensor([cache["cache_speech_token"][0]]),
            sample_method=sample_method,
        )  # fmt: skip
        tokens_out.extend(tokens)
        wav, _ = local_flow_forward(
            flow=flow, token_list=tokens, prompt_speech_tokens=flow_prompt_token,
            speech_feat=speech_feat, embedding=embedding,
        )  # fmt: skip
        outputs.append(wav)
    return torch.cat(outputs, dim=1), None, tokens_out, {"uttid": text_info[0]}
