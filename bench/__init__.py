"""Benchmark scripts: each prints figures (run them with `python -m bench.<name>`); none is a timed test."""
