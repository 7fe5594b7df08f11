"""Classification metrics that respect class imbalance (scikit-learn does the arithmetic)."""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): the mean |accuracy - confidence|
    weighted by the fraction of images in each bin."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Everything ``metrics.json`` holds, from true labels and predicted probabilities."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    out: dict = {"n": len(y_true), "accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                     zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(class_names)}
    ranking = ranking_scores(y_true, probs, class_names)
    for name, scores in ranking.items():
        out["per_class"][name].update(scores)
    ap = [v["average_precision"] for v in ranking.values() if "average_precision" in v]
    if ap:
        out["average_precision_macro"] = float(np.mean(ap))
    out["ece"] = expected_calibration_error(probs, y_true)
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["class_names"] = list(class_names)
    if len(y_true) > 1:
        out["ci95"] = bootstrap_intervals(y_true, y_pred, class_names)
    return out


def ranking_scores(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, dict]:
    """Per class, one-vs-rest average precision and ROC AUC of its probability: how well the
    model ranks that class's images first, whatever the decision threshold. F1 of a rare class
    moves a lot with the operating point (class weights, priors); these do not. A class absent
    from ``y_true`` (or the only one present) has no score."""
    out: dict[str, dict] = {}
    for i, name in enumerate(class_names):
        positive = y_true == i
        if positive.any() and not positive.all():
            out[name] = {"average_precision": float(average_precision_score(positive, probs[:, i])),
                         "roc_auc": float(roc_auc_score(positive, probs[:, i]))}
    return out


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro/weighted F1 and per-class F1 of confusion matrices ``(..., K, K)``
    (rows true, columns predicted; zero division gives 0, as scikit-learn's ``zero_division=0``)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    n = support.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        weighted = np.where(n > 0, (f1 * support).sum(axis=-1) / n, 0.0)
        accuracy = np.where(n > 0, tp.sum(axis=-1) / n, 0.0)
    return {"accuracy": accuracy, "f1_macro": f1.mean(axis=-1), "f1_weighted": weighted, "f1": f1}


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                        n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals (images resampled with replacement) for accuracy, macro
    and weighted F1 and each class's F1: how far the figures could move on another test set of
    the same size. A class with ten test images has a wide interval, and says so."""
    k = len(class_names)
    codes = np.asarray(y_true, dtype=np.int64) * k + np.asarray(y_pred, dtype=np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(codes), size=(n_boot, len(codes)))
    offsets = (np.arange(n_boot) * k * k)[:, None]
    cms = np.bincount((codes[draws] + offsets).ravel(), minlength=n_boot * k * k)
    scores = scores_from_confusion(cms.reshape(n_boot, k, k))
    q = [(1 - level) / 2, (1 + level) / 2]

    def interval(values: np.ndarray) -> list[float]:
        return [float(v) for v in np.quantile(values, q)]

    return {"level": level, "n_boot": n_boot,
            **{key: interval(scores[key]) for key in ("accuracy", "f1_macro", "f1_weighted")},
            "per_class_f1": {name: interval(scores["f1"][:, i]) for i, name in enumerate(class_names)}}


def vote_rmse(predicted: dict[str, np.ndarray], table, n_boot: int = 2000, level: float = 0.95,
              seed: int = 0) -> dict:
    """Root-mean-square error of predicted vote fractions against a table's, over every
    (image, column) pair the table fills (blank cells left out), with a percentile bootstrap
    interval over images. ``predicted``: column -> values in the table's own weighting
    (:func:`galaxymorph.data.questions.in_table_weighting`)."""
    cols = list(predicted)
    pred = np.column_stack([np.asarray(predicted[c], dtype=np.float64) for c in cols])
    true = np.column_stack([np.asarray(table[c], dtype=np.float64) for c in cols])
    ok = np.isfinite(true)
    sq = np.where(ok, (pred - np.where(ok, true, 0.0)) ** 2, 0.0)
    per_image_sum, per_image_n = sq.sum(axis=1), ok.sum(axis=1)
    out: dict = {"n_images": int((per_image_n > 0).sum()), "columns": cols,
                 "rmse": float(np.sqrt(per_image_sum.sum() / max(per_image_n.sum(), 1)))}
    out["per_column"] = {c: float(np.sqrt(sq[:, j].sum() / max(ok[:, j].sum(), 1)))
                         for j, c in enumerate(cols)}
    if len(pred) > 1:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(pred), size=(n_boot, len(pred)))
        boot = np.sqrt(per_image_sum[draws].sum(axis=1) / np.maximum(per_image_n[draws].sum(axis=1), 1))
        out["ci95"] = [float(v) for v in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])]
    return out
