"""``record_text``: one reading of its values for configure() and synthesis(), and the
request's choice deciding everything it covers, exception messages included."""

from __future__ import annotations

import pytest

import tts_otel
from tts_otel import semconv
from tts_otel.errors import ConfigurationError
from tts_otel.testing import TelemetryCapture, attributes, capture

SECRET = "secret-text-4711"

# (value, mode): the same table for both levels.
MODES = [
    (True, "plain"),
    (False, "off"),
    ("plain", "plain"),
    ("off", "off"),
    ("hash", "sha256"),
    ("sha256", "sha256"),
    ("yes", "plain"),
    ("no", "off"),
    ("true", "plain"),
    ("false", "off"),
    ("1", "plain"),
    ("0", "off"),
    (" Plain ", "plain"),
    ("HASH", "sha256"),
]
BAD = ["sometimes", "plain text", "2"]


def _recorded(cap: TelemetryCapture) -> str:
    root = attributes(cap.spans_named(semconv.SPAN_SYNTHESIZE)[0])
    if semconv.ATTR_TEXT in root:
        return "plain"
    return "sha256" if semconv.ATTR_TEXT_SHA256 in root else "off"


@pytest.mark.parametrize(("value", "mode"), MODES)
def test_configure_and_synthesis_read_a_mode_alike(value: bool | str, mode: str) -> None:
    with capture(record_text=value) as cap:
        assert cap.telemetry.settings.record_text == mode
        with tts_otel.synthesis(model="m", text=SECRET):
            pass
        assert _recorded(cap) == mode
    with capture() as cap:
        with tts_otel.synthesis(model="m", text=SECRET, record_text=value):
            pass
        assert _recorded(cap) == mode
        assert cap.telemetry.values.dropped == 0


@pytest.mark.parametrize("value", BAD)
def test_a_bad_mode_is_refused_by_configure_and_dropped_by_synthesis(value: str) -> None:
    with pytest.raises(ConfigurationError, match="record_text"):
        with capture(record_text=value):
            pass
    with capture(record_text=True) as cap:
        with tts_otel.synthesis(model="m", text=SECRET, record_text=value):
            pass
        assert _recorded(cap) == "off"  # a mode the service got wrong records nothing
        assert cap.telemetry.values.dropped == 1


def _exported(cap: TelemetryCapture) -> str:
    found = []
    for span in cap.spans():
        found.append(repr(attributes(span)))
        found += [repr(event.attributes) for event in span.events]
        found.append(str(span.status.description))
    return "\n".join(found)


class _Refused(Exception):
    pass


def _fail(where: str, record_text: bool) -> None:
    """A request (or its stage) failing with a message that quotes the text."""
    try:
        with tts_otel.synthesis(model="m", text=SECRET, record_text=record_text) as req:
            if where == "stage":
                with req.stage("acoustic"):
                    raise _Refused(f"cannot say {SECRET}")
            raise _Refused(f"cannot say {SECRET}")
    except _Refused:
        pass


@pytest.mark.parametrize("where", ["request", "stage"])
def test_the_request_choice_wins_over_configure_for_exception_messages(where: str) -> None:
    with capture(record_text=True) as cap:
        _fail(where, record_text=False)
        assert SECRET not in _exported(cap)
        assert cap.spans_named(semconv.SPAN_SYNTHESIZE)[0].events  # the type is still there


@pytest.mark.parametrize("where", ["request", "stage"])
def test_a_request_asking_for_plain_text_gets_exception_messages(where: str) -> None:
    with capture() as cap:
        _fail(where, record_text=True)
        assert f"cannot say {SECRET}" in _exported(cap)
