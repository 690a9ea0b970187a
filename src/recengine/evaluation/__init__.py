"""Measuring recommenders: metrics, the evaluator, and reports."""
