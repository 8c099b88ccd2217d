"""Stand-in package: same import path as GLM-TTS, small real torch work."""
