"""Scores of a real-vs-synthetic detector: the synthetic column and the binary metrics.

The positive class is *synthetic* throughout: precision is the share of images flagged as
generated that were generated, recall the share of generated images that were caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.errors import ModelError

#: What evaluate writes in ``metrics.json`` at the least (tests and the app rely on these).
METRIC_KEYS = ("accuracy", "roc_auc", "precision", "recall", "f1", "confusion_matrix", "n")


def synthetic_column(clf) -> int:
    """Index of the 'synthetic' class of a loaded classifier (a detector has one)."""
    names = [c.lower() for c in clf.class_names]
    if "synthetic" not in names:
        raise ModelError(f"not a real-vs-synthetic detector: its classes are {clf.class_names} "
                         "(expected 'real' and 'synthetic'); train one with `galaxymorph detector "
                         "train`", clf.source)
    return names.index("synthetic")


def detector_metrics(y_true: np.ndarray, p: np.ndarray, sources: Sequence[str] | None = None,
                     threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, ROC AUC, precision/recall/F1 (synthetic = positive), confusion matrix
    (rows true real/synthetic, columns predicted), and accuracy per source spec."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(np.int64)
    both = len(np.unique(y)) == 2
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, average="binary", pos_label=1,
                                                       zero_division=0)
    out: dict[str, Any] = {
        "n": len(y),
        "n_real": int((y == 0).sum()),
        "n_synthetic": int((y == 1).sum()),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        # AUC needs both classes; None (null in JSON) says 'undefined' rather than a fake 0.5.
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "precision": float(prec),
        "recall": float(rec),
        "f1": float(f1),
        "threshold": threshold,
        "positive_class": "synthetic",
        "class_names": ["real", "synthetic"],
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }
    if sources is not None:
        src = np.asarray(list(sources), dtype=object)
        out["per_source"] = {
            str(s): {"n": int(m.sum()), "label": "synthetic" if y[m].mean() > 0.5 else "real",
                     "accuracy": float((pred[m] == y[m]).mean()),
                     "mean_p_synthetic": float(p[m].mean())}
            for s in dict.fromkeys(src.tolist()) for m in [src == s]}
    return out


def plot_roc(y_true: np.ndarray, p: np.ndarray, out: str | Path, title: str = "ROC") -> Path | None:
    """ROC curve figure (skipped, returning None, when one class is missing)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from galaxymorph.evaluation.plots import _plt, _save

    if len(np.unique(y_true)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y_true, p)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC {roc_auc_score(y_true, p):.4f}")
    ax.plot([0, 1], [0, 1], "--", lw=0.8, color="grey")
    ax.set_xlabel("false positive rate (real flagged synthetic)")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)
