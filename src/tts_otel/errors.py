"""Exception types raised by tts-otel. Only configuration errors are ever raised;
telemetry problems on the request path are logged, never raised."""


class ConfigurationError(ValueError):
    """A setting is invalid. The message names the setting and the fix."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {problem}. Fix: {fix}")
