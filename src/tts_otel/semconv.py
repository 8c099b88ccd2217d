"""Every name tts-otel emits: span names, attribute keys, metric names, units, buckets.

Dashboards, alert rules and both InfluxDB paths depend on these strings, so
they live in one place and nowhere else.
"""

from __future__ import annotations

from typing import Final

INSTRUMENTATION_SCOPE: Final = "tts_otel"

# --- stages -----------------------------------------------------------------
STAGE_SPEAKER_EMBEDDING: Final = "speaker_embedding"
STAGE_TEXT_NORMALIZATION: Final = "text_normalization"
STAGE_ACOUSTIC: Final = "acoustic"
STAGE_ACOUSTIC_LLM: Final = "acoustic.llm"
STAGE_ACOUSTIC_FLOW: Final = "acoustic.flow"
STAGE_VOCODER: Final = "vocoder"
# Loading models inside a request's handler (a web UI's lazy model cache): a stage of its
# own so that a first request slow for loading is told apart from a slow synthesis.
STAGE_MODEL_LOAD: Final = "model_load"

# The four top-level stages of a GLM-TTS-shaped request, in pipeline order.
TOP_LEVEL_STAGES: Final = (
    STAGE_SPEAKER_EMBEDDING,
    STAGE_TEXT_NORMALIZATION,
    STAGE_ACOUSTIC,
    STAGE_VOCODER,
)

# Every known stage in pipeline order, a nested one (``acoustic.llm``) among its siblings
# under its parent: the one order of every table and chart. Model loading, when a request
# does it, comes first.
STAGE_ORDER: Final = (
    STAGE_MODEL_LOAD,
    STAGE_SPEAKER_EMBEDDING,
    STAGE_TEXT_NORMALIZATION,
    STAGE_ACOUSTIC,
    STAGE_ACOUSTIC_LLM,
    STAGE_ACOUSTIC_FLOW,
    STAGE_VOCODER,
)

# --- spans ------------------------------------------------------------------
SPAN_SYNTHESIZE: Final = "tts.synthesize"
STAGE_SPAN_PREFIX: Final = "tts."


def stage_span_name(stage: str) -> str:
    """Span name of a stage: ``acoustic.llm`` -> ``tts.acoustic.llm``."""
    return STAGE_SPAN_PREFIX + stage


# --- attributes -------------------------------------------------------------
ATTR_STAGE: Final = "tts.stage"
ATTR_SEGMENT_INDEX: Final = "tts.segment.index"
ATTR_MODEL_NAME: Final = "tts.model.name"
ATTR_MODEL_VERSION: Final = "tts.model.version"
ATTR_SAMPLE_RATE: Final = "tts.sample_rate"
ATTR_KV_CACHE: Final = "tts.kv_cache"
ATTR_STREAMING: Final = "tts.streaming"
ATTR_TEXT_CHARACTERS: Final = "tts.text.characters"
ATTR_TEXT_LENGTH_BIN: Final = "tts.text.length_bin"
ATTR_TEXT: Final = "tts.text"
ATTR_TEXT_SHA256: Final = "tts.text.sha256"
ATTR_LANGUAGE: Final = "tts.language"
ATTR_PROMPT_TEXT_PRESENT: Final = "tts.prompt_text.present"
ATTR_AUDIO_DURATION: Final = "tts.audio.duration"
ATTR_AUDIO_CHUNKS: Final = "tts.audio.chunks"
# Samples of each streamed chunk handed to the caller, in order (the first 1024).
ATTR_AUDIO_CHUNK_SAMPLES: Final = "tts.audio.chunk.samples"
# Streaming playback: seconds a listener who starts at the first chunk waits for
# later ones, and how many times playback stalls (vLLM-Omni's audio underrun).
ATTR_AUDIO_UNDERRUN: Final = "tts.audio.underrun"
ATTR_AUDIO_STALLS: Final = "tts.audio.stalls"
ATTR_SPEECH_TOKENS: Final = "tts.acoustic.speech_tokens"
ATTR_TOKENS_PER_SECOND: Final = "tts.acoustic.tokens_per_second"
ATTR_REAL_TIME_FACTOR: Final = "tts.real_time_factor"
ATTR_TIME_TO_FIRST_AUDIO: Final = "tts.time_to_first_audio"
# Streaming that renders block by block inside one call (GLM-TTS's token2wav_stream):
# internal timings, not audio delivered to the caller.
ATTR_STREAM_BLOCK_INDEX: Final = "tts.stream.block.index"
ATTR_STREAM_FIRST_BLOCK_READY: Final = "tts.stream.first_block_ready"
ATTR_GPU_MEMORY_PEAK: Final = "tts.gpu.memory.peak"
ATTR_STAGE_GPU_DURATION: Final = "tts.stage.gpu_duration"
ATTR_OUTCOME: Final = "tts.outcome"
# What the request does: synthesis from text, or resynthesis of audio from speech tokens.
ATTR_REQUEST_KIND: Final = "tts.request.kind"
REQUEST_KIND_SYNTHESIS: Final = "synthesis"
REQUEST_KIND_RESYNTHESIS: Final = "resynthesis"
# Seconds the request waited in the server's queue before its handler ran (gradio's queue).
ATTR_QUEUE_WAIT: Final = "tts.queue.wait"
# The request used prompt work prepared earlier (and counted in the request that did it).
ATTR_PROMPT_REUSED: Final = "tts.prompt.reused"
# On the link a request keeps to the span that was current when it started but had ended.
ATTR_LINK_ENDED_PARENT: Final = "tts.link.ended_parent"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_TELEMETRY_SIGNAL: Final = "tts.telemetry.signal"
ATTR_EXPORTER: Final = "tts.exporter"
ATTR_EXPORTER_OUTCOME: Final = "tts.exporter.outcome"
ATTR_HW_ID: Final = "hw.id"
ATTR_HW_NAME: Final = "hw.name"
# OTel's hardware conventions: power and temperature are the generic hw.* metrics,
# told apart by hw.type.
ATTR_HW_TYPE: Final = "hw.type"
HW_TYPE_GPU: Final = "gpu"
ATTR_GPU_THROTTLE_REASON: Final = "tts.gpu.throttle.reason"

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
# Set beside tts.acoustic.speech_tokens and tts.time_to_first_audio, which they equal.
GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: Final = "gen_ai.usage.audio.output_tokens"
GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_OPERATION_TEXT_TO_SPEECH: Final = "text_to_speech"
GEN_AI_OUTPUT_SPEECH: Final = "speech"

OUTCOME_OK: Final = "ok"
OUTCOME_ERROR: Final = "error"

# --- text length bins (characters) ------------------------------------------
LENGTH_BIN_SHORT: Final = "short"
LENGTH_BIN_MEDIUM: Final = "medium"
LENGTH_BIN_LONG: Final = "long"
SHORT_TEXT_BELOW: Final = 50
MEDIUM_TEXT_BELOW: Final = 100


def length_bin(characters: int) -> str:
    """Bounded tag for a text length: ``short`` < 50 <= ``medium`` < 100 <= ``long``."""
    if characters < SHORT_TEXT_BELOW:
        return LENGTH_BIN_SHORT
    if characters < MEDIUM_TEXT_BELOW:
        return LENGTH_BIN_MEDIUM
    return LENGTH_BIN_LONG


# --- metric attribute allowlist (the cardinality guard's first rule) --------
METRIC_ATTRIBUTE_KEYS: Final = frozenset(
    {
        ATTR_STAGE,
        ATTR_MODEL_NAME,
        ATTR_MODEL_VERSION,
        ATTR_SAMPLE_RATE,
        ATTR_KV_CACHE,
        ATTR_STREAMING,
        ATTR_TEXT_LENGTH_BIN,
        ATTR_REQUEST_KIND,
        ATTR_OUTCOME,
        ATTR_ERROR_TYPE,
    }
)
OVERFLOW_VALUE: Final = "other"

# --- metrics ----------------------------------------------------------------
METRIC_REQUEST_DURATION: Final = "tts.request.duration"
METRIC_STAGE_DURATION: Final = "tts.stage.duration"
METRIC_STAGE_GPU_DURATION: Final = "tts.stage.gpu_duration"
METRIC_TIME_TO_FIRST_AUDIO: Final = "tts.request.time_to_first_audio"
METRIC_QUEUE_WAIT: Final = "tts.request.queue_wait"
METRIC_CHUNK_INTERVAL: Final = "tts.audio.chunk.interval"
METRIC_AUDIO_UNDERRUN: Final = "tts.audio.underrun"
METRIC_AUDIO_STALLS: Final = "tts.audio.stalls"
METRIC_REAL_TIME_FACTOR: Final = "tts.real_time_factor"
METRIC_AUDIO_DURATION: Final = "tts.audio.duration"
METRIC_TEXT_CHARACTERS: Final = "tts.text.characters"
METRIC_SPEECH_TOKENS: Final = "tts.acoustic.speech_tokens"
METRIC_GPU_MEMORY_PEAK: Final = "tts.gpu.memory.peak"
METRIC_REQUESTS: Final = "tts.requests"
METRIC_TELEMETRY_DROPPED: Final = "tts.telemetry.dropped"
METRIC_TELEMETRY_BUFFERED: Final = "tts.telemetry.buffered"  # gauge: found waiting at collection
METRIC_EXPORTER_POINTS: Final = "tts.exporter.points"  # counter: sent, dropped
METRIC_EXPORTER_SPOOL_POINTS: Final = "tts.exporter.spool.points"  # gauges: what the spool holds
METRIC_EXPORTER_SPOOL_USAGE: Final = "tts.exporter.spool.usage"
METRIC_EXPORTER_SPOOL_LIMIT: Final = "tts.exporter.spool.limit"
METRIC_HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
METRIC_HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"
METRIC_HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"
METRIC_HW_POWER: Final = "hw.power"
METRIC_HW_TEMPERATURE: Final = "hw.temperature"
# No convention names throttling: tts.* until one does. 0/1 per tts.gpu.throttle.reason.
METRIC_GPU_THROTTLED: Final = "tts.gpu.throttled"

UNIT_SECONDS: Final = "s"
UNIT_RATIO: Final = "1"
UNIT_BYTES: Final = "By"
UNIT_WATTS: Final = "W"
UNIT_CELSIUS: Final = "Cel"
UNIT_CHARACTERS: Final = "{character}"
UNIT_TOKENS: Final = "{token}"
UNIT_REQUESTS: Final = "{request}"
UNIT_POINTS: Final = "{item}"
UNIT_STALLS: Final = "{stall}"

# Seconds, 5 ms to 600 s. Never capped at 60 s: a slow long-text request must
# land in a real bucket, not in +Inf. Python's Prometheus exporter writes an
# integer bound as le="1.0" and the collector as le="1"; non-integer bounds
# (0.75, 1.5, 2.5) read the same from both, so alert thresholds use those.
LATENCY_BUCKETS_S: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
REAL_TIME_FACTOR_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)
AUDIO_DURATION_BUCKETS_S: Final = (
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
TEXT_CHARACTERS_BUCKETS: Final = (10, 25, 50, 100, 200, 300, 500, 1000, 2000, 5000)
STALLS_BUCKETS: Final = (0, 1, 2, 3, 5, 10, 20, 50)
SPEECH_TOKENS_BUCKETS: Final = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
GPU_MEMORY_BUCKETS_BY: Final = tuple(float(2**exponent) for exponent in range(26, 38))
