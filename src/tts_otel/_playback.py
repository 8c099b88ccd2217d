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


class Playback:
    """Times are ``perf_counter()`` readings; ``first_audio`` is seconds from ``start``."""

    __slots__ = (
        "_runs_out",
        "chunks",
        "first_audio",
        "last_chunk",
        "seconds",
        "stalls",
        "start",
        "underrun",
    )  # fmt: skip

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0
        self.chunks = 0
        self.first_audio: float | None = None
        self.last_chunk: float | None = None
        self.underrun = 0.0
        self.stalls = 0
        self._runs_out: float | None = None  # when a listener who started runs out of audio

    def audio(self, seconds: float, now: float) -> None:
        """Audio the caller can play from ``now`` on."""
        self.seconds += seconds
        if self.first_audio is None:
            self.first_audio = now - self.start

    def chunk(self, seconds: float, now: float) -> float | None:
        """A streamed chunk handed over at ``now``; returns the gap since the last one.

        A listener plays from the first chunk on, and waits whenever a chunk
        arrives after the audio before it has run out: those waits are the
        underrun, their number the stalls.
        """
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
        self.audio(seconds, now)
        return gap

    def record(
        self, span: Span, duration: float, instruments: Instruments,
        config: Mapping[str, AttributeValue], ctx: Context, measurements: list[Measurement],
    ) -> None:  # fmt: skip
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
            measurements.append((instruments.audio_underrun.record, self.underrun, config, ctx))
            measurements.append((instruments.audio_stalls.record, self.stalls, config, ctx))
        if self.seconds > 0:
            rtf = duration / self.seconds
            span.set_attribute(semconv.ATTR_AUDIO_DURATION, self.seconds)
            span.set_attribute(semconv.ATTR_REAL_TIME_FACTOR, rtf)
            measurements.append((instruments.audio_duration.record, self.seconds, config, ctx))
            measurements.append((instruments.real_time_factor.record, rtf, config, ctx))


def audio_seconds(
    checker: ValueChecker, samples: object, rate: object, seconds: object
) -> float | None:
    """Seconds of audio the service reported, as seconds or as samples at a rate."""
    if seconds is not None:
        return checker.number(semconv.ATTR_AUDIO_DURATION, seconds)
    count = checker.count("samples", samples)
    hertz = checker.positive(semconv.ATTR_SAMPLE_RATE, rate)
    if count is None or hertz is None:
        return None
    return count / hertz
