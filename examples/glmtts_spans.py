"""Instrument GLM-TTS and print the span tree of one request.

Here it runs against the stand-ins in tests/glmtts_standin (GLM-TTS's weights
cannot be downloaded on this machine):

    PYTHONPATH=tests/glmtts_standin .venv/bin/python examples/glmtts_spans.py

With GLM-TTS checked out, run it from GLM-TTS's folder and use its own
load_models() in place of the stand-in objects below.
"""

import tempfile
from pathlib import Path

import torch

import tts_otel
from tts_otel.integrations.glmtts import GLMTTSInstrumentor
from tts_otel.report import from_otlp_json
from tts_otel.trace_tree import render_trees

out = tempfile.mkdtemp()
telemetry = tts_otel.configure(service_name="glm-tts", exporters="file", output_dir=out)
GLMTTSInstrumentor().instrument(model_version="stand-in")

import glmtts_inference  # noqa: E402 - after instrument(), as the README advises
from cosyvoice.cli.frontend import TextFrontEnd, TTSFrontEnd  # noqa: E402
from flow.flow import Flow  # noqa: E402
from llm.glmtts import GLMTTS  # noqa: E402
from utils.tts_model_util import Token2Wav  # noqa: E402

frontend = TTSFrontEnd(
    lambda t: [ord(c) % 1000 for c in t], None, lambda w: torch.zeros(1, 150, 80), ""
)
text = ("今天北京的最高气温是23.5度，空气质量良好，适合户外活动。"
        "我们在2024年发布了新版本，平均延迟降低了35%，显存占用也明显减少。")  # fmt: skip

with tts_otel.synthesis(model="glm-tts", sample_rate=24000, text=text, prompt_text="参考文本"):
    embedding = frontend._extract_spk_embedding("prompt.wav")
    prompt_tokens = frontend._extract_speech_token(["prompt.wav"])
    feat = frontend._extract_speech_feat("prompt.wav", sample_rate=24000)
    cache = {
        "cache_text": ["参考文本"],
        "cache_text_token": [frontend._extract_text_token("参考文本")],
        "cache_speech_token": [prompt_tokens.squeeze().tolist()],
        "use_cache": True,
    }
    glmtts_inference.generate_long(
        frontend, TextFrontEnd(), GLMTTS(), Token2Wav(Flow(), 24000, "cpu"), ["utt-1", text],
        cache, "cpu", embedding, flow_prompt_token=prompt_tokens, speech_feat=feat,
    )  # fmt: skip

telemetry.shutdown()
print(render_trees(from_otlp_json(Path(out) / "traces.jsonl")))
