"""Instrument GLM-TTS and print the span tree of one request from its web UI handler.

Here it runs against the stand-ins in tests/glmtts_standin (GLM-TTS's weights
cannot be downloaded on this machine):

    PYTHONPATH=tests/glmtts_standin .venv/bin/python examples/glmtts_spans.py

With GLM-TTS checked out, run it from GLM-TTS's folder: the same calls reach
its real `tools/gradio_app.run_inference`.
"""

import tempfile
from pathlib import Path

import tts_otel
from tts_otel.integrations.glmtts import GLMTTSInstrumentor
from tts_otel.read.records import from_otlp_json
from tts_otel.read.waterfall import render_trees

out = tempfile.mkdtemp()
telemetry = tts_otel.configure(service_name="glm-tts", exporters="file", output_dir=out)
GLMTTSInstrumentor().instrument(model_version="stand-in")

from tools.gradio_app import run_inference  # noqa: E402 - GLM-TTS's web UI handler

text = (
    "今天北京的最高气温是23.5度，空气质量良好，适合户外活动。"
    "我们在2024年发布了新版本，平均延迟降低了35%，显存占用也明显减少。"
)
run_inference("他当时还跟线下其他的站姐吵架。", "examples/prompt/jiayan_zh.wav", text, 42, 24000)

telemetry.shutdown()
print(render_trees(from_otlp_json(Path(out) / "traces.jsonl")))
