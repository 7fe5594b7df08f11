"""Scores of a real-vs-synthetic detector: the synthetic column and the binary metrics.

The positive class is *synthetic* throughout: precision is the share of images flagged as
generated that were generated, recall the share of generated images that were caught.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


#: A threshold no probability reaches: the rule flags nothing (see threshold_at_false_alarm).
NEVER_FLAGS = float(np.nextafter(1.0, 2.0))


def false_alarm_rank(n: int, false_alarm: float) -> int:
    """How many of ``n`` real validation images the threshold may flag so that a *new* real
    image is flagged with probability at most ``false_alarm``: a new image's score is equally
    likely to fall in any of the n + 1 gaps between them (split-conformal), so flagging k of
    them gives (k + 1) / (n + 1). 0 when ``n`` is too small for the rate; the expected rate is
    then 1 / (n + 1), above the target (:func:`expected_false_alarm` says so)."""
    return max(0, int(np.floor(false_alarm * (n + 1) + 1e-9)) - 1)


def expected_false_alarm(n: int, false_alarm: float) -> float:
    """The false-alarm rate on new real images of the threshold set on ``n`` real images."""
    return (false_alarm_rank(n, false_alarm) + 1) / (n + 1)


def threshold_at_false_alarm(p_real: np.ndarray, false_alarm: float) -> float:
    """The lowest threshold on a score (a probability, or any real-valued score such as the
    verdict's log-odds) whose false-alarm rate on *new* real images is at most ``false_alarm``
    (:func:`false_alarm_rank`; ``score >= threshold`` reads synthetic). Generated images play
    no part: a threshold set on them would move with every new generator."""
    s = np.sort(np.asarray(p_real, dtype=np.float64))[::-1]
    if not len(s):
        raise ValueError("no real images to set the threshold on")
    k = false_alarm_rank(len(s), false_alarm)  # false alarms allowed among these images
    if k >= len(s):
        return float(s[-1])
    # Just above the (k+1)-th highest: with ties there, fewer than k are flagged, never more.
    # Ties at 1.0 (saturated probabilities) leave no such value in [0, 1]: NEVER_FLAGS then.
    return float(np.nextafter(s[k], np.inf))


def _ranking(y: np.ndarray, score: np.ndarray) -> tuple[float | None, float | None]:
    """ROC AUC and average precision (synthetic = positive); None when one class is missing."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return None, None
    return float(roc_auc_score(y, score)), float(average_precision_score(y, score))


#: Decision rules of ``detector train --verdict``: one combined score (:mod:`.verdict`), or
#: the earlier ones: p(synthetic) or atypicality at half the rate each, p(synthetic) alone.
VERDICTS = ("combined", "either", "p_synthetic")


def detector_metrics(y_true: np.ndarray, score: np.ndarray, flagged: np.ndarray,
                     sources: Sequence[str] | None = None, threshold: float = 0.5,
                     parts: Mapping[str, np.ndarray] | None = None,
                     flagged_by: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy at the detector's verdict (``flagged``), ROC AUC and average precision of its
    score (``synthetic_score``), the false-alarm rate on real images, precision/recall/F1
    (synthetic = positive), confusion matrix (rows true real/synthetic, columns predicted), and
    per source: a generated source is scored against *all* the real images (its own AUC, AP,
    share caught, and which parts flagged it), a real one by its false alarms. Each of
    ``parts`` (``p_network``, ``p_statistics``, ``atypicality``) gets its own AUC and AP beside
    the score's; ``flagged_by`` holds each image's flagging parts, comma-separated."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y = np.asarray(y_true, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    pred = np.asarray(flagged).astype(np.int64)
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, average="binary", pos_label=1,
                                                       zero_division=0)
    real = y == 0
    auc, ap = _ranking(y, score)
    out: dict[str, Any] = {
        "n": len(y),
        "n_real": int(real.sum()),
        "n_synthetic": int((~real).sum()),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        # AUC needs both classes; None (null in JSON) says 'undefined' rather than a fake 0.5.
        "roc_auc": auc,
        "average_precision": ap,
        "false_alarm_rate": float(pred[real].mean()) if real.any() else None,
        "precision": float(prec),
        "recall": float(rec),
        "f1": float(f1),
        "threshold": float(threshold),
        "positive_class": "synthetic",
        "class_names": ["real", "synthetic"],
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }
    given = {k: np.asarray(v, dtype=np.float64) for k, v in (parts or {}).items()
             if np.isfinite(np.asarray(v, dtype=np.float64)).any()}
    out["parts"] = {}
    for name, v in given.items():
        ok = np.isfinite(v)
        a_auc, a_ap = _ranking(y[ok], v[ok])
        out["parts"][name] = {"roc_auc": a_auc, "average_precision": a_ap}
    why = None if flagged_by is None else [set(filter(None, str(w).split(","))) for w in flagged_by]
    if sources is not None:
        src = np.asarray(list(sources), dtype=object)
        out["per_source"] = {}
        for name in dict.fromkeys(src.tolist()):
            m = src == name
            fake = bool(y[m].mean() > 0.5)
            row: dict[str, Any] = {"n": int(m.sum()), "label": "synthetic" if fake else "real",
                                   "accuracy": float((pred[m] == y[m]).mean()),
                                   "mean_synthetic_score": float(np.nanmean(score[m]))}
            if fake:  # this source against every real image of the evaluation
                both = m | real
                row["roc_auc"], row["average_precision"] = _ranking(y[both], score[both])
                row["recall"] = float(pred[m].mean())
                row["parts_roc_auc"] = {k: _ranking(y[both & np.isfinite(v)],
                                                    v[both & np.isfinite(v)])[0]
                                        for k, v in given.items()}
                if why is not None:  # which parts flagged this source's images
                    mine = [w for w, here in zip(why, m, strict=True) if here]
                    row["flagged_by"] = {k: sum(k in w for w in mine) / len(mine) for k in given}
                    row["caught_by_atypicality_only"] = sum(w == {"atypicality"} for w in mine) / len(mine)
            else:
                row["false_alarm_rate"] = float(pred[m].mean())
            out["per_source"][str(name)] = row
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
