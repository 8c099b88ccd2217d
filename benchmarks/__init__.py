"""Benchmarks: run each as a script (``python benchmarks/<name>.py``); they print ratios."""
