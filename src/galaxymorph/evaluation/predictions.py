"""Per-image outputs of an evaluation: ``predictions.csv`` and ``errors.png``.

What an astronomer looks at first is not the macro F1 but the galaxies themselves: which ones
the model got wrong, and how sure it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from galaxymorph.evaluation.plots import plot_image_grid
from galaxymorph.io_utils import atomic_path
from galaxymorph.models.calibration import uncertain


def predictions_frame(ids: list[str], y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                      threshold: float | None = None) -> pd.DataFrame:
    """One row per image, in ``galaxymorph predict``'s columns for a labelled input (so the two
    files join and compare column for column): path, predicted ``label`` and ``label_name``,
    confidence, abstention, every ``prob_<class>``, ``true_label`` and ``true_label_name``
    (class indices and names of the model), then ``correct``."""
    y_true, probs = np.asarray(y_true, dtype=np.int64), np.asarray(probs)
    if not len(ids) == len(y_true) == len(probs):
        raise ValueError(f"{len(ids)} ids, {len(y_true)} labels, {len(probs)} probability rows")
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    names = np.asarray(class_names, dtype=object)
    frame = pd.DataFrame({
        "path": list(ids), "label": pred, "label_name": names[pred] if len(pred) else [],
        "probability": probs.max(axis=1) if len(probs) else [],
        "uncertain": uncertain(probs, threshold) if len(probs) else [],
    })
    for i, name in enumerate(class_names):
        frame[f"prob_{name}"] = probs[:, i] if len(probs) else []  # as predict names them
    frame["true_label"] = y_true
    frame["true_label_name"] = names[y_true] if len(y_true) else []
    frame["correct"] = pred == y_true
    return frame


def vote_frame(answers: np.ndarray, schema) -> pd.DataFrame:
    """A tree model's predicted conditional vote fractions, one ``vote_<question>_<answer>``
    column per answer (the names ``predict`` writes, and a catalog's vote columns may use)."""
    from galaxymorph.data.questions import VOTE_PREFIX

    return pd.DataFrame(np.asarray(answers), columns=[VOTE_PREFIX + a for a in schema.answer_names])


def write_predictions(path: str | Path, frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


def write_error_gallery(path: str | Path, frame: pd.DataFrame, read: Callable[[int], np.ndarray],
                        n: int = 16) -> Path:
    """The ``n`` most confident mistakes (row order of ``frame``; ``read(row)`` gives the image)."""
    wrong = frame[~frame["correct"]].sort_values("probability", ascending=False, kind="stable").head(n)
    images, captions = [], []
    for row, r in wrong.iterrows():
        try:
            images.append(read(int(row)))
        except Exception:  # a gallery is a bonus: one unreadable file must not lose the evaluation
            continue
        captions.append(f"{Path(r['path']).name}\ntrue {r['true_label_name']} · predicted "
                        f"{r['label_name']} {r['probability']:.0%}")
    title = (f"The {len(images)} most confident mistakes ({int((~frame['correct']).sum())} of "
             f"{len(frame)} wrong)")
    return plot_image_grid(images, captions, path, title)
