"""A synthetic GLM-TTS-shaped pipeline, instrumented only through tts-otel's public API.

Stages per request: speaker embedding of a prompt waveform, then for every
text segment text normalisation, the acoustic model (``acoustic.llm`` token
generation and ``acoustic.flow`` flow matching) and the vocoder. Random
weights from a fixed seed: timings are realistic in shape, the audio is noise.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

import torch

import tts_otel
from tts_otel.reference import models, text

MODEL_NAME = "reference-glm-tts"
MODEL_VERSION = "0.1.0"
SAMPLE_RATES = (24_000, 32_000)
# GLM-TTS's streaming block sizes, in speech tokens.
STREAM_BLOCKS = (25, 50, 200)


class ReferencePipeline:
    """``synthesize(text)`` returns a waveform tensor and records one ``tts.synthesize`` trace.

    ``inject_latency`` maps a stage name to extra seconds slept inside that
    stage; it may be changed between requests (alerting tests use it).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 24_000,
        kv_cache: bool = True,
        flow_steps: int = 10,
        seed: int = 0,
        inject_latency: Mapping[str, float] | None = None,
    ) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, not {sample_rate}")
        self.sample_rate = sample_rate
        self.kv_cache = kv_cache
        self.flow_steps = flow_steps
        self.seed = seed
        self.inject_latency: dict[str, float] = dict(inject_latency or {})
        torch.manual_seed(seed)
        self.speaker_encoder = models.SpeakerEncoder().eval()
        self.llm = models.SpeechLM().eval()
        self.flow = models.FlowMatcher().eval()
        self.vocoder = models.Vocoder(sample_rate).eval()
        self.prompt = models.prompt_waveform(3.0, seed)

    def _delay(self, stage: str) -> None:
        extra = self.inject_latency.get(stage, 0.0)
        if extra > 0:
            time.sleep(extra)

    def synthesize(
        self, text_in: str, *, prompt_text: str | None = None, streaming: bool = False
    ) -> torch.Tensor:
        digest = hashlib.sha256(text_in.encode()).digest()
        generator = torch.Generator().manual_seed(self.seed ^ int.from_bytes(digest[:4], "big"))
        with tts_otel.synthesis(
            model=MODEL_NAME,
            model_version=MODEL_VERSION,
            sample_rate=self.sample_rate,
            kv_cache=self.kv_cache,
            streaming=streaming,
            text=text_in,
            language=text.language(text_in),
            prompt_text=prompt_text,
        ) as request:
            with request.stage(tts_otel.semconv.STAGE_SPEAKER_EMBEDDING):
                self._delay(tts_otel.semconv.STAGE_SPEAKER_EMBEDDING)
                with torch.inference_mode():
                    speaker = self.speaker_encoder(self.prompt)
            pieces: list[torch.Tensor] = []
            for index, segment in enumerate(text.split_segments(text_in)):
                with request.segment(index):
                    pieces.extend(self._segment(request, segment, speaker, generator, streaming))
            return torch.cat(pieces) if pieces else torch.zeros(0)

    def _segment(
        self,
        request: tts_otel.Synthesis,
        segment: str,
        speaker: torch.Tensor,
        generator: torch.Generator,
        streaming: bool,
    ) -> list[torch.Tensor]:
        semconv = tts_otel.semconv
        with request.stage(semconv.STAGE_TEXT_NORMALIZATION):
            self._delay(semconv.STAGE_TEXT_NORMALIZATION)
            spoken = text.normalize(segment)
            text_tokens = torch.tensor([[ord(c) % models.TEXT_VOCAB for c in spoken]])
        count = max(1, round(text.spoken_seconds(spoken) * models.TOKENS_PER_SECOND))
        with request.stage(semconv.STAGE_ACOUSTIC):
            self._delay(semconv.STAGE_ACOUSTIC)
            with request.stage(semconv.STAGE_ACOUSTIC_LLM):
                tokens = self.llm.generate(text_tokens, speaker, count, self.kv_cache, generator)
            request.speech_tokens(tokens.shape[-1])
            if not streaming:
                with request.stage(semconv.STAGE_ACOUSTIC_FLOW):
                    mel = self.flow(tokens, speaker, self.flow_steps, generator)
        if not streaming:
            with request.stage(semconv.STAGE_VOCODER):
                self._delay(semconv.STAGE_VOCODER)
                wav = self.vocoder(mel)
            request.audio(samples=wav.shape[-1], sample_rate=self.sample_rate)
            return [wav]
        return self._stream(request, tokens, speaker, generator)

    def _stream(
        self,
        request: tts_otel.Synthesis,
        tokens: torch.Tensor,
        speaker: torch.Tensor,
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        """Flow and vocoder block by block; each block is a chunk handed to the client."""
        semconv = tts_otel.semconv
        chunks: list[torch.Tensor] = []
        start, block = 0, 0
        while start < tokens.shape[-1]:
            size = STREAM_BLOCKS[min(block, len(STREAM_BLOCKS) - 1)]
            piece = tokens[:, start : start + size]
            with request.stage(semconv.STAGE_ACOUSTIC), request.stage(semconv.STAGE_ACOUSTIC_FLOW):
                mel = self.flow(piece, speaker, self.flow_steps, generator)
            with request.stage(semconv.STAGE_VOCODER):
                self._delay(semconv.STAGE_VOCODER)
                wav = self.vocoder(mel)
            request.chunk(wav.shape[-1], self.sample_rate)
            chunks.append(wav)
            start, block = start + size, block + 1
        return chunks
