"""Per-epoch history of a run, read back from Lightning's CSV log (survives resumes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_history(metrics_csv: Path) -> dict[str, list[float]]:
    if not metrics_csv.exists():
        return {}
    df = pd.read_csv(metrics_csv)
    if "epoch" not in df.columns:
        return {}
    out: dict[str, list[float]] = {}
    for col in df.columns:
        if col in ("epoch", "step") or col == "batch_acc":
            continue
        per_epoch = df.dropna(subset=[col]).groupby("epoch")[col].last()
        if len(per_epoch):
            out[col] = per_epoch.astype(float).tolist()
    return out


def read_batch_series(metrics_csv: Path, key: str = "batch_acc") -> list[float]:
    if not metrics_csv.exists():
        return []
    df = pd.read_csv(metrics_csv)
    return df[key].dropna().astype(float).tolist() if key in df.columns else []
