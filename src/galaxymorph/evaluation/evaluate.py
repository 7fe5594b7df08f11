"""Evaluate a classifier on decoded images: logits -> calibrated probabilities -> metrics files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from galaxymorph.evaluation.metrics import classification_metrics
from galaxymorph.evaluation.plots import plot_confusion_matrix, plot_risk_coverage
from galaxymorph.evaluation.report import write_report
from galaxymorph.evaluation.selective import coverage_curve, selective_markdown, selective_metrics
from galaxymorph.io_utils import write_json
from galaxymorph.models.calibration import softmax
from galaxymorph.models.engine import Engine


def dataset_logits(engine: Engine, dataset: Dataset, batch_size: int = 128, tta: bool = False,
                   swap: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every item of a ``(x, y)`` dataset, run by ``engine`` (a
    classifier's :attr:`~galaxymorph.models.loading.Classifier.engine`)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    logits, ys = [], []
    for x, y in loader:
        logits.append(engine.logits(x, tta, swap))
        ys.append(y.numpy())
    out = np.concatenate(logits) if logits else np.zeros((0, 0), dtype=np.float32)
    # Class indices (int64), or decision-tree target rows as the dataset gives them.
    return out, np.concatenate(ys) if ys else np.zeros(0, dtype=np.int64)


def write_evaluation(out_dir: str | Path, y_true: np.ndarray, logits: np.ndarray,
                     class_names: list[str], temperature: float = 1.0, title: str = "Evaluation",
                     extra: dict[str, Any] | None = None,
                     sections: dict[str, str] | None = None, threshold: float | None = None,
                     ids: list[str] | None = None,
                     read: Callable[[int], np.ndarray] | None = None,
                     answers: tuple[np.ndarray, Any] | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``risk_coverage.png`` and ``report.md``;
    with the images' ``ids`` also ``predictions.csv`` (and a tree model's ``(answers, schema)``,
    its ``vote_*`` columns), and with ``read(i)`` (image ``i`` as decoded) ``errors.png``.
    ``threshold``: the model's abstention threshold. Returns the metrics."""
    from galaxymorph.evaluation.predictions import (
        predictions_frame,
        vote_frame,
        write_error_gallery,
        write_predictions,
    )

    out_dir = Path(out_dir)
    probs = softmax(logits, temperature)
    metrics = classification_metrics(y_true, probs, class_names)
    metrics["temperature"] = float(temperature)
    metrics["selective"] = selective_metrics(probs, y_true, threshold)
    metrics.update(extra or {})
    write_json(out_dir / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], class_names, out_dir / "confusion_matrix.png")
    sections = dict(sections or {})
    if len(y_true):
        cov, acc = coverage_curve(probs, y_true)
        th = metrics["selective"].get("threshold")
        plot_risk_coverage(cov, acc, out_dir / "risk_coverage.png", th["coverage"] if th else None)
        sections["Abstention: accuracy on the most confident images"] = selective_markdown(
            metrics["selective"])
    if ids is not None:
        frame = predictions_frame(ids, y_true, probs, class_names, threshold)
        if answers is not None:
            frame = frame.join(vote_frame(*answers))
        write_predictions(out_dir / "predictions.csv", frame)
        if read is not None:
            write_error_gallery(out_dir / "errors.png", frame, read)
    write_report(out_dir / "report.md", title, metrics, sections,
                 figures=("confusion_matrix.png", "errors.png", "curves.png"))
    return metrics


def write_vote_evaluation(out_dir: str | Path, ids: list[str], answers: np.ndarray, schema,
                          title: str, extra: dict[str, Any],
                          sections: dict[str, str] | None) -> dict[str, Any]:
    """A table of vote fractions without class labels: ``metrics.json`` (``vote_rmse``),
    ``predictions.csv`` (path and predicted fractions) and ``report.md``."""
    import pandas as pd

    from galaxymorph.evaluation.predictions import vote_frame, write_predictions
    from galaxymorph.io_utils import write_text

    out_dir = Path(out_dir)
    metrics = {"n": len(ids)} | extra
    write_json(out_dir / "metrics.json", metrics)
    frame = pd.DataFrame({"path": ids}).join(vote_frame(answers, schema))
    write_predictions(out_dir / "predictions.csv", frame)
    body = "\n\n".join(f"## {h}\n\n{b}" for h, b in (sections or {}).items())
    write_text(out_dir / "report.md", f"# {title}\n\n{body}\n")
    return metrics
