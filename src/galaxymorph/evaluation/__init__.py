"""Evaluation: imbalance-aware metrics, plots, reports and comparison tables."""
