"""What a request is: its bounded configuration (on every span, guarded on every
metric) and its span attributes, from settings the service passed, checked.

A value of the wrong type is dropped, counted and warned about once, never
raised on; the input text is measured, and exported only as asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar, cast

from opentelemetry.util.types import AttributeValue

from tts_otel import semconv
from tts_otel._validation import TextRecording, ValueChecker, plain, text_mode
from tts_otel.telemetry import Telemetry

T = TypeVar("T")


class Description:
    """Filled in place, so a request whose description fails midway keeps what was done."""

    # A plain class: a dataclass costs about 1 ms of `import tts_otel` (Python 3.11
    # compiles each generated method; measured on the 2-core reference machine).
    __slots__ = (
        "attributes",
        "characters",
        "metric_config",
        "sample_rate",
        "span_config",
        "text_mode",
    )

    def __init__(self) -> None:
        self.sample_rate: int | None = None
        self.characters: int | None = None
        self.span_config: dict[str, AttributeValue] = {}
        self.metric_config: Mapping[str, AttributeValue] = {}
        self.attributes: dict[str, AttributeValue] = {}
        # The request's own record_text, else configure()'s: it decides the text
        # attribute and whether exception messages (which may quote it) are kept.
        self.text_mode: TextRecording | None = None


class _Checked:
    def __init__(self, checker: ValueChecker) -> None:
        self._checker = checker

    def of(self, name: str, value: object, kind: type[T]) -> T | None:
        if value is None:
            return None
        wrong_bool = kind is int and isinstance(value, bool)
        if isinstance(value, kind) and not wrong_bool:
            if isinstance(value, str):  # made valid UTF-8 here, once, for spans and labels
                return cast(T, self._checker.text(name, cast(str, plain(value))))
            return cast(T, plain(value))
        self._checker.reject(name, value, f"not a {kind.__name__}")
        return None


def describe(
    into: Description,
    telemetry: Telemetry,
    *,
    model: object,
    model_version: object,
    sample_rate: object,
    kv_cache: object,
    streaming: object,
    text: object,
    characters: object,
    language: object,
    prompt_text: object,
    record_text: object,
    attributes: object,
    kind: object = semconv.REQUEST_KIND_SYNTHESIS,
) -> None:
    checker = telemetry.values
    checked = _Checked(checker)
    model_name = checked.of(semconv.ATTR_MODEL_NAME, model, str) or "unknown"
    into.sample_rate = checked.of(semconv.ATTR_SAMPLE_RATE, sample_rate, int)
    input_text = checked.of("text", text, str)
    if input_text is not None:
        into.characters = len(input_text)
    elif characters is not None:
        into.characters = checker.count(semconv.ATTR_TEXT_CHARACTERS, characters)
    config: dict[str, AttributeValue | None] = {
        semconv.ATTR_MODEL_NAME: model_name,
        semconv.ATTR_MODEL_VERSION: checked.of(semconv.ATTR_MODEL_VERSION, model_version, str),
        semconv.ATTR_SAMPLE_RATE: into.sample_rate,
        semconv.ATTR_KV_CACHE: checked.of(semconv.ATTR_KV_CACHE, kv_cache, bool),
        semconv.ATTR_STREAMING: checked.of(semconv.ATTR_STREAMING, streaming, bool) or False,
        semconv.ATTR_TEXT_LENGTH_BIN: (
            semconv.length_bin(into.characters) if into.characters is not None else None
        ),
        semconv.ATTR_REQUEST_KIND: (
            checked.of(semconv.ATTR_REQUEST_KIND, kind, str) or semconv.REQUEST_KIND_SYNTHESIS
        ),
    }
    # Bounded configuration goes on every span (so stage spans can be
    # grouped by it in InfluxDB) and, guarded, on every metric.
    into.span_config.update({k: v for k, v in config.items() if v is not None})
    into.metric_config = telemetry.guard.bound(config)
    prompt = checked.of(semconv.ATTR_PROMPT_TEXT_PRESENT, prompt_text, str)
    into.attributes.update(
        {
            **into.span_config,
            semconv.GEN_AI_OPERATION_NAME: semconv.GEN_AI_OPERATION_TEXT_TO_SPEECH,
            semconv.GEN_AI_REQUEST_MODEL: model_name,
            semconv.GEN_AI_OUTPUT_TYPE: semconv.GEN_AI_OUTPUT_SPEECH,
            semconv.ATTR_PROMPT_TEXT_PRESENT: bool(prompt and prompt.strip()),
        }
    )
    if into.characters is not None:
        into.attributes[semconv.ATTR_TEXT_CHARACTERS] = into.characters
    spoken = checked.of(semconv.ATTR_LANGUAGE, language, str)
    if spoken is not None:
        into.attributes[semconv.ATTR_LANGUAGE] = spoken
    _record_text(into, telemetry, input_text, record_text)
    if attributes is not None:
        if isinstance(attributes, Mapping):
            _add_attributes(into, checker, attributes)
        else:
            checker.reject("attributes", attributes, "not a mapping")


def _add_attributes(
    into: Description, checker: ValueChecker, extra: Mapping[object, object]
) -> None:
    """The service's extra attributes, one at a time: a bad one costs itself only.

    Keys must be strings (the SDK would drop others, but a str subclass whose
    ``__hash__`` raises would fail the request span's start); values are
    checked by the SDK when the span starts.
    """
    for key, item in list(extra.items()):
        name = plain(key)
        if isinstance(name, str):
            into.attributes[name] = cast(AttributeValue, plain(item))
        else:
            checker.reject("attributes", key, "key not a str")


def _record_text(
    into: Description, telemetry: Telemetry, text: str | None, record_text: object
) -> None:
    mode: TextRecording | None = telemetry.settings.record_text
    record_text = plain(record_text)  # a str subclass's own methods are not run
    if record_text is not None:
        try:
            mode = text_mode(record_text) if isinstance(record_text, bool | str) else None
        except ValueError:
            mode = None
        if mode is None:  # the service got it wrong: record nothing of the text
            telemetry.values.reject("record_text", record_text, "not a recording mode")
            mode = "off"
    into.text_mode = mode = mode or "off"
    if text is not None and mode == "plain":
        limit = telemetry.settings.span_attribute_length
        if len(text) > limit:  # the SDK would cut it too, uncounted
            telemetry.values.note_cut(
                semconv.ATTR_TEXT, f"<{len(text)} characters>", f"longer than {limit}"
            )
            text = text[:limit]
        into.attributes[semconv.ATTR_TEXT] = text
    elif text is not None and mode == "sha256":
        import hashlib  # only here: importing it is a tenth of `import tts_otel`'s time

        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        into.attributes[semconv.ATTR_TEXT_SHA256] = digest
