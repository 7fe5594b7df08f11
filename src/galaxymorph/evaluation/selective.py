"""Selective classification: how accurate the model is on the images it is most sure of.

The risk-coverage curve (Geifman & El-Yaniv 2017) sorts images by confidence (top calibrated
probability) and reports the accuracy of the most confident fraction. A model whose confidence
means something gains accuracy as it abstains on more images; one that is confidently wrong
does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from galaxymorph.models.calibration import uncertain

#: Coverages reported everywhere (report.md, metrics.json, benchmarks).
COVERAGES = (1.0, 0.9, 0.8)


def coverage_curve(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, accuracy)`` of the ``k`` most confident images, for k = 1..n."""
    conf = np.asarray(probs).max(axis=1)
    correct = np.asarray(probs).argmax(axis=1) == np.asarray(y_true)
    order = np.argsort(-conf, kind="stable")
    k = np.arange(1, len(order) + 1)
    return k / len(order), np.cumsum(correct[order]) / k


def accuracy_at_coverage(probs: np.ndarray, y_true: np.ndarray, coverage: float) -> float:
    """Accuracy on the ``ceil(coverage * n)`` most confident images."""
    _, acc = coverage_curve(probs, y_true)
    if not len(acc):
        return float("nan")
    k = max(1, int(np.ceil(coverage * len(acc) - 1e-9)))
    return float(acc[k - 1])


def selective_metrics(probs: np.ndarray, y_true: np.ndarray,
                      threshold: float | None = None) -> dict[str, Any]:
    """Accuracy at 100/90/80% coverage, the area under the risk-coverage curve (lower is
    better), and, with the model's abstention threshold, its coverage and accuracy here."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    if not len(y_true):
        return {}
    _, acc = coverage_curve(probs, y_true)
    out: dict[str, Any] = {
        "accuracy_at_coverage": {f"{c:.2f}": accuracy_at_coverage(probs, y_true, c) for c in COVERAGES},
        "aurc": float(np.mean(1 - acc)),
    }
    if threshold is not None:
        keep = ~uncertain(probs, threshold)
        correct = probs.argmax(axis=1) == y_true
        out["threshold"] = {"confidence": float(threshold), "coverage": float(keep.mean()),
                            "accuracy": float(correct[keep].mean()) if keep.any() else None,
                            "uncertain": int((~keep).sum())}
    return out


def selective_markdown(sel: dict[str, Any]) -> str:
    """The report section: accuracy when the model may abstain on its least confident images."""
    if not sel:
        return ""
    rows = ["| coverage | accuracy |", "| --- | --- |"]
    rows += [f"| {float(c):.0%} | {a:.4f} |" for c, a in sel["accuracy_at_coverage"].items()]
    text = "\n".join(rows) + f"\n\nArea under the risk-coverage curve: {sel['aurc']:.4f} (lower is better)."
    th = sel.get("threshold")
    if th:
        acc = "-" if th["accuracy"] is None else f"{th['accuracy']:.4f}"
        text += (f"\n\nAt the model's abstention threshold (confidence < {th['confidence']:.3f} is "
                 f"answered \"uncertain\", chosen on its validation fold): {th['uncertain']} images "
                 f"uncertain, coverage {th['coverage']:.1%}, accuracy on the rest {acc}.")
    return text + "\n\n![risk_coverage.png](risk_coverage.png)\n"
