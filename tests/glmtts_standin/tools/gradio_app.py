"""Stand-in for GLM-TTS's web UI (tools/gradio_app.py): a real gradio app of the same shape.

- `from glmtts_inference import load_models, generate_long, DEVICE`: imported by name.
- `get_models` is a lazy model cache, loaded on the first click (and again when the sample
  rate changes), inside the click's handler.
- `run_inference` checks its inputs, then inside a `try` loads the models, normalises the
  prompt and the text, tokenises the prompt, extracts the prompt's speech tokens, features
  and speaker embedding, calls `generate_long`, and returns `(sample_rate, int16 samples)`;
  any exception is logged and re-raised as `gr.Error("Inference failed: ...")`.
- A `gr.Blocks` app binds the handler to a button; `python -m tools.gradio_app` serves it with
  `app.queue().launch(...)`, gradio's default queue (one job at a time).
Differences: the server's address comes from GRADIO_SERVER_NAME and GRADIO_SERVER_PORT (the
real one hard-codes 0.0.0.0:8048), so tests serve it on a free loopback port.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import gradio as gr
import numpy as np
import torch
from glmtts_inference import DEVICE, generate_long, load_models

logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")

MODEL_CACHE: dict[str, Any] = {"loaded": False, "sample_rate": None, "components": None}


def get_models(use_phoneme: bool = False, sample_rate: int = 24000) -> Any:
    if MODEL_CACHE["loaded"] and MODEL_CACHE["sample_rate"] == sample_rate:
        return MODEL_CACHE["components"]
    logging.info(f"Loading models with sample_rate={sample_rate}...")
    components = load_models(use_phoneme=use_phoneme, sample_rate=sample_rate)
    MODEL_CACHE["components"] = components
    MODEL_CACHE["sample_rate"] = sample_rate
    MODEL_CACHE["loaded"] = True
    return MODEL_CACHE["components"]


def run_inference(
    prompt_text: str,
    prompt_audio_path: str,
    input_text: str,
    seed: int,
    sample_rate: int,
    use_cache: bool = True,
) -> tuple[int, Any]:
    if not input_text:
        raise gr.Error("Please provide text to synthesize.")
    if not prompt_audio_path:
        raise gr.Error("Please upload a prompt audio file.")
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
        flow_prompt_token = torch.tensor(cache_speech_token_list, dtype=torch.int32).to(DEVICE)
        cache = {
            "cache_text": [norm_prompt_text],
            "cache_text_token": [prompt_text_token],
            "cache_speech_token": cache_speech_token_list,
            "use_cache": use_cache,
        }
        tts_speech, _, _, _ = generate_long(
            frontend=frontend,
            text_frontend=text_frontend,
            llm=llm,
            flow=flow,
            text_info=["", norm_input_text],
            cache=cache,
            embedding=embedding,
            flow_prompt_token=flow_prompt_token,
            speech_feat=speech_feat,
            sample_method="ras",
            seed=seed,
            device=DEVICE,
            use_phoneme=False,
        )
        audio_data = np.clip(tts_speech.squeeze().cpu().numpy(), -1.0, 1.0)
        return (sample_rate, (audio_data * 32767.0).astype(np.int16))
    except Exception as e:
        logging.error(f"Inference failed: {e}")
        raise gr.Error(f"Inference failed: {e!s}") from e


with gr.Blocks(title="GLMTTS Inference") as app:
    prompt_audio = gr.Audio(
        label="Upload Prompt Audio (Reference Voice)",
        type="filepath",
        value=os.path.join("examples", "prompt", "jiayan_zh.wav"),
    )
    prompt_text = gr.Textbox(label="Prompt Text", value="他当时还跟线下其他的站姐吵架。")
    input_text = gr.Textbox(label="Text to Synthesize", value="我最爱吃人参果，你喜欢吃吗？")
    sample_rate = gr.Radio(choices=[24000, 32000], value=24000, label="Sample Rate (Hz)")
    seed = gr.Number(label="Seed", value=42, precision=0)
    use_cache = gr.Checkbox(label="Use KV Cache", value=True)
    generate_btn = gr.Button("Generate Audio", variant="primary")
    output_audio = gr.Audio(label="Synthesized Result")
    generate_btn.click(
        fn=run_inference,
        inputs=[prompt_text, prompt_audio, input_text, seed, sample_rate, use_cache],
        outputs=[output_audio],
    )

if __name__ == "__main__":
    app.queue().launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "8048")),
        share=False,
    )
