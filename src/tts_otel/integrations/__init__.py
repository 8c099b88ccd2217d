"""Instrumentors for TTS libraries: one module per library."""
