"""Evaluate a classifier on decoded images: logits -> calibrated probabilities -> metrics files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from galaxymorph.evaluation.metrics import classification_metrics
from galaxymorph.evaluation.plots import plot_confusion_matrix
from galaxymorph.evaluation.report import write_report
from galaxymorph.io_utils import write_json
from galaxymorph.models.calibration import softmax
from galaxymorph.models.tta import predict_logits, resolve_device


def dataset_logits(net: torch.nn.Module, dataset: Dataset, batch_size: int = 128, tta: bool = False,
                   swap: list[int] | None = None, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every item of a ``(x, y)`` dataset."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    ys: list[int] = []

    def batches():
        for x, y in loader:
            ys.extend(y.tolist())
            yield x

    logits = predict_logits(net, batches(), tta=tta, swap=swap, device=resolve_device(device))
    return logits, np.asarray(ys, dtype=np.int64)


def write_evaluation(out_dir: str | Path, y_true: np.ndarray, logits: np.ndarray,
                     class_names: list[str], temperature: float = 1.0, title: str = "Evaluation",
                     extra: dict[str, Any] | None = None,
                     sections: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``confusion_matrix.png`` and ``report.md``; return the metrics."""
    out_dir = Path(out_dir)
    probs = softmax(logits, temperature)
    metrics = classification_metrics(y_true, probs, class_names)
    metrics["temperature"] = float(temperature)
    metrics.update(extra or {})
    write_json(out_dir / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], class_names, out_dir / "confusion_matrix.png")
    write_report(out_dir / "report.md", title, metrics, sections)
    return metrics
