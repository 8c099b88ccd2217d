"""The reference workload: a synthetic GLM-TTS-shaped pipeline for demos and benchmarks.

It needs torch (``pip install tts-otel[torch]``). Its weights are random
from a fixed seed, so the audio is noise; the timings have a real service's
shape (KV cache on and off, 24 and 32 kHz, text length).
"""

from tts_otel.reference.corpus import TEXTS
from tts_otel.reference.pipeline import MODEL_NAME, MODEL_VERSION, ReferencePipeline

__all__ = ["MODEL_NAME", "MODEL_VERSION", "TEXTS", "ReferencePipeline"]
