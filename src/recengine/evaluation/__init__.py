"""Offline evaluation: ranking, rating and beyond-accuracy metrics, the evaluator and reports."""
