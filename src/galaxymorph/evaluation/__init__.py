"""Evaluation: imbalance-aware metrics, calibration, plots, reports and comparison tables."""
