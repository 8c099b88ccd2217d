"""Audio handed to the caller, as a listener hears it: when it can start, the gaps
between chunks, and how long playback waits for audio that has not arrived."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._validation import ValueChecker

if TYPE_CHECKING:
    from tts_otel._instruments import Instruments
    from tts_otel._metric_buffer import Measurement


# Chunk sizes kept for the span, so a stream can be checked against what the caller got;
# past this many a request keeps the count, not every size (its memory stays bounded).
MAX_CHUNK_SIZES = 1024


class Playback:
    """Times are ``perf_counter()`` readings; ``first_audio`` is seconds from ``start``.

    Audio reported as samples is summed as samples per rate and divided once, so
    chunks of 2.1 s in total read 2.1, not the float sum of their parts.
    """

    __slots__ = (
        "_given_seconds",
        "_runs_out",
        "_samples",
        "chunk_samples",
        "chunks",
        "first_audio",
        "last_chunk",
        "stalls",
        "start",
        "underrun",
    )

    def __init__(self) -> None:
        self.start = 0.0
        self._given_seconds = 0.0
        self._samples: dict[float, int] = {}  # sample rate -> samples at that rate
        self.chunks = 0
        self.chunk_samples: list[int] = []
        self.first_audio: float | None = None
        self.last_chunk: float | None = None
        self.underrun = 0.0
        self.stalls = 0
        self._runs_out: float | None = None  # when a listener who started runs out of audio

    @property
    def seconds(self) -> float:
        return self._given_seconds + sum(count / rate for rate, count in self._samples.items())

    def audio(self, audio: Audio, now: float) -> None:
        """Audio the caller can play from ``now`` on."""
        if isinstance(audio, float):
            self._given_seconds += audio
        else:
            count, rate = audio
            self._samples[rate] = self._samples.get(rate, 0) + count
        if self.first_audio is None:
            self.first_audio = now - self.start

    def chunk(self, audio: Audio, now: float) -> float | None:
        """A streamed chunk handed over at ``now``; returns the gap since the last one.

        A listener plays from the first chunk on, and waits whenever a chunk
        arrives after the audio before it has run out: those waits are the
        underrun, their number the stalls.
        """
        seconds = audio if isinstance(audio, float) else audio[0] / audio[1]
        gap = None if self.last_chunk is None else now - self.last_chunk
        self.last_chunk = now
        if self._runs_out is None:
            self._runs_out = now + seconds
        elif now > self._runs_out:
            self.underrun += now - self._runs_out
            self.stalls += 1
            self._runs_out = now + seconds
        else:
            self._runs_out += seconds
        self.chunks += 1
        if not isinstance(audio, float) and len(self.chunk_samples) < MAX_CHUNK_SIZES:
            self.chunk_samples.append(audio[0])
        self.audio(audio, now)
        return gap

    def record(
        self,
        span: Span,
        duration: float,
        instruments: Instruments,
        config: Mapping[str, AttributeValue],
        ctx: Context,
        measurements: list[Measurement],
    ) -> None:
        """At the request's end: on its span, and as measurements to record."""
        if self.first_audio is not None:
            span.set_attribute(semconv.ATTR_TIME_TO_FIRST_AUDIO, self.first_audio)
            span.set_attribute(semconv.GEN_AI_TIME_TO_FIRST_CHUNK, self.first_audio)
            record = instruments.time_to_first_audio.record
            measurements.append((record, self.first_audio, config, ctx))
        if self.chunks:
            span.set_attribute(semconv.ATTR_AUDIO_CHUNKS, self.chunks)
            span.set_attribute(semconv.ATTR_AUDIO_UNDERRUN, self.underrun)
            span.set_attribute(semconv.ATTR_AUDIO_STALLS, self.stalls)
            if self.chunk_samples:
                span.set_attribute(semconv.ATTR_AUDIO_CHUNK_SAMPLES, self.chunk_samples)
            measurements.append((instruments.audio_underrun.record, self.underrun, config, ctx))
            measurements.append((instruments.audio_stalls.record, self.stalls, config, ctx))
        seconds = self.seconds
        if seconds > 0:
            rtf = duration / seconds
            span.set_attribute(semconv.ATTR_AUDIO_DURATION, seconds)
            span.set_attribute(semconv.ATTR_REAL_TIME_FACTOR, rtf)
            measurements.append((instruments.audio_duration.record, seconds, config, ctx))
            measurements.append((instruments.real_time_factor.record, rtf, config, ctx))


# Audio as the service reported it: seconds, or (samples, sample rate).
Audio = float | tuple[int, float]


def checked_audio(
    checker: ValueChecker, samples: object, rate: object, seconds: object
) -> Audio | None:
    """The audio the service reported, checked: seconds, or samples at a rate."""
    if seconds is not None:
        return checker.number(semconv.ATTR_AUDIO_DURATION, seconds)
    count = checker.count("samples", samples)
    hertz = checker.positive(semconv.ATTR_SAMPLE_RATE, rate)
    if count is None or hertz is None:
        return None
    return (count, hertz)
