"""The contract with GLM-TTS: what is wrapped, by import path, which parameter names
and positions the handlers read, and how to find GLM-TTS's modules without importing
them. tests/integrations/test_glmtts.py fails when the stand-ins (kept to GLM-TTS's signatures)
drift from it."""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tts_otel import semconv

SCRIPT = "glmtts_inference"
WEB_UI = "tools.gradio_app"


class Kind(enum.Enum):
    """How the instrumentor handles a wrapped call (``handlers.Handlers`` has one per kind)."""

    NORMALIZE = enum.auto()  # text_normalize: inside generate_long, starts a segment
    TEXT = enum.auto()  # other text normalisation work (split, g2p)
    TOKENIZE = enum.auto()  # no span: tells which text a streaming request's LLM was given
    PART = enum.auto()  # a part of a group stage (speaker embedding, acoustic)
    VOCODER = enum.auto()
    STREAM = enum.auto()  # token2wav_stream: a streaming request
    RESYNTHESIS = enum.auto()  # token2wav_with_cache outside a request
    MODEL_LOAD = enum.auto()
    REQUEST = enum.auto()  # generate_long
    WEB_REQUEST = enum.auto()  # the web UI's click handler


@dataclass(frozen=True)
class Wrapped:
    """One wrapped GLM-TTS callable: where it is, the parameters (after ``self``) its
    handler reads, how it is handled, and for a part the stage and group it records."""

    module: str
    qualname: str
    parameters: tuple[str, ...]
    kind: Kind
    stage: str | None = None
    group: str | None = None
    generates_speech_tokens: bool = False  # its result's length is the tokens generated


def _part(
    module: str,
    qualname: str,
    parameters: tuple[str, ...],
    stage: str,
    group: str,
    tokens: bool = False,
) -> Wrapped:
    return Wrapped(module, qualname, parameters, Kind.PART, stage, group, tokens)


_FRONTEND = "cosyvoice.cli.frontend"
_SPEAKER = semconv.STAGE_SPEAKER_EMBEDDING
CONTRACT: tuple[Wrapped, ...] = (
    Wrapped(_FRONTEND, "TextFrontEnd.text_normalize", ("text",), Kind.NORMALIZE),
    Wrapped(
        _FRONTEND, "TextFrontEnd.split_by_len", ("text", "min_text_len", "max_text_len"), Kind.TEXT
    ),
    Wrapped(_FRONTEND, "TextFrontEnd.g2p_infer", ("text",), Kind.TEXT),
    Wrapped(_FRONTEND, "TTSFrontEnd._extract_text_token", ("text",), Kind.TOKENIZE),
    _part(
        _FRONTEND,
        "TTSFrontEnd._extract_spk_embedding",
        ("speech",),
        "speaker_embedding.spk_embedding",
        _SPEAKER,
    ),
    _part(
        _FRONTEND,
        "TTSFrontEnd._extract_speech_token",
        ("path_or_tuple",),
        "speaker_embedding.speech_token",
        _SPEAKER,
    ),
    _part(
        _FRONTEND,
        "TTSFrontEnd._extract_speech_feat",
        ("speech", "sample_rate"),
        "speaker_embedding.speech_feat",
        _SPEAKER,
    ),
    _part(
        "llm.glmtts",
        "GLMTTS.inference",
        (
            "text",
            "text_len",
            "prompt_text",
            "prompt_text_len",
            "prompt_speech_token",
            "prompt_speech_token_len",
        ),
        semconv.STAGE_ACOUSTIC_LLM,
        semconv.STAGE_ACOUSTIC,
        tokens=True,
    ),
    _part(
        "flow.flow",
        "Flow.inference_with_cache",
        ("token", "prompt_token", "prompt_feat", "embedding", "n_timesteps"),
        semconv.STAGE_ACOUSTIC_FLOW,
        semconv.STAGE_ACOUSTIC,
    ),
    Wrapped("utils.hift_util", "HiFTInference.__call__", ("mel",), Kind.VOCODER),
    Wrapped("utils.vocos_util", "Vocos2DInference.__call__", ("xs_mel_tr",), Kind.VOCODER),
    Wrapped(
        "utils.tts_model_util",
        "Token2Wav.token2wav_stream",
        ("syn_token", "block_sizes", "look_future_sizes", "fade_sec", "embedding"),
        Kind.STREAM,
    ),
    Wrapped(
        "utils.tts_model_util",
        "Token2Wav.token2wav_with_cache",
        ("token_bt", "n_timesteps", "prompt_token", "prompt_feat", "embedding"),
        Kind.RESYNTHESIS,
    ),
    Wrapped(SCRIPT, "load_models", ("use_phoneme", "sample_rate"), Kind.MODEL_LOAD),
    Wrapped(
        SCRIPT,
        "generate_long",
        ("frontend", "text_frontend", "llm", "flow", "text_info", "cache", "device", "embedding"),
        Kind.REQUEST,
    ),
    # The web UI's click handler: one user request, from model loading to the audio returned.
    Wrapped(
        WEB_UI,
        "run_inference",
        ("prompt_text", "prompt_audio_path", "input_text", "seed", "sample_rate", "use_cache"),
        Kind.WEB_REQUEST,
    ),
)


def argument(entry: Wrapped, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """A wrapped call's argument by name, whether passed by keyword or by position."""
    if name in kwargs:
        return kwargs[name]
    position = entry.parameters.index(name)
    return args[position] if position < len(args) else None


def length(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[-1])
    return len(value) if isinstance(value, list) else None


def findable(module: str) -> bool:
    """Whether ``module``'s top-level package can be imported, without importing it.

    Under ``opentelemetry-instrument`` this runs before the script's folder is on
    ``sys.path``, so that folder is searched too.
    """
    top = module.split(".")[0]
    try:
        if importlib.util.find_spec(top) is not None:
            return True
    except (ImportError, ValueError):
        return False
    script = sys.argv[0] if sys.argv else ""
    if not os.path.isfile(script):
        return False
    folder = os.path.dirname(os.path.abspath(script))
    return importlib.machinery.PathFinder.find_spec(top, [folder]) is not None


def main_module_name(module: ModuleType) -> str | None:
    """The GLM-TTS module ``__main__`` runs (``python glmtts_inference.py``: the script;
    ``python -m tools.gradio_app``: the web UI), ``""`` for another program, ``None`` while
    it cannot tell yet."""
    spec: importlib.machinery.ModuleSpec | None = getattr(module, "__spec__", None)
    if spec is not None and spec.name in (SCRIPT, WEB_UI):
        return spec.name
    path: str | None = getattr(module, "__file__", None)
    if path is None:
        return None
    return SCRIPT if os.path.splitext(os.path.basename(path))[0] == SCRIPT else ""
