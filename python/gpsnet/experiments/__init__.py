"""Experiment scripts whose numbers are quoted in docs/learning.md."""
