"""Pseudo-labels: a trained model's confident answers on unlabelled images, written as a
catalog that training takes as a weak-label source (``train --weak-data catalog:PSEUDO.csv``).

Self-training on a survey's own unlabelled cutouts is how a model learns that survey's framing
and stretch without anyone labelling them; only confident answers are kept, because a wrong
pseudo-label is learned as surely as a right one. Weak sources enter the training fold only,
so the figures a run reports never score a model on its own pseudo-labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from galaxymorph.data.questions import VOTE_PREFIX
from galaxymorph.errors import ConfigError, DataError
from galaxymorph.inference.writers import prob_column


def pseudo_label(inputs: Any, out: str | Path, model: str | Path = "default",
                 min_confidence: float = 0.9, max_per_class: int | None = None,
                 tta: bool | None = None, batch_size: int = 64, workers: int | None = None,
                 device: str = "auto", progress: bool = True, votes: bool = False) -> dict[str, Any]:
    """Predict ``inputs`` (anything :func:`galaxymorph.predict` takes, ``.txt`` lists included)
    and write the images whose calibrated top probability is at least ``min_confidence`` to the
    catalog ``out`` (``filename,label,label_name,confidence``, absolute file names), plus
    ``out`` with ``.json`` for how it was made. ``max_per_class`` keeps each class's most
    confident images only, so that a survey's commonest class does not swamp the rest.
    ``tta``: ``None`` follows the model card. Returns the counts written per class.

    ``votes`` (a decision-tree model): write soft targets instead, the predicted vote fractions
    (``filename`` and one ``vote_<question>_<answer>`` column per answer) of every readable
    image at least ``min_confidence`` confident in its class: a catalog of votes, which
    ``train --questions`` reads like any vote table (its answers weighted by how sure the
    model was of them, rather than rounded to one class).
    """
    from galaxymorph.inference.predict import predict
    from galaxymorph.io_utils import write_json, write_text

    if not 0 < min_confidence <= 1:
        raise ConfigError(f"min_confidence must be in (0, 1], got {min_confidence}")
    if max_per_class is not None and max_per_class < 1:
        raise ConfigError(f"max_per_class must be at least 1, got {max_per_class}")
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ConfigError("the pseudo-label catalog must be a .csv file", out)
    frame = predict(inputs, model=model, tta=tta, batch_size=batch_size, workers=workers,
                    device=device, progress=progress)
    assert isinstance(frame, pd.DataFrame)
    read = frame[frame["error"].fillna("").astype(str) == ""]
    if read.empty:
        raise DataError("no readable image among the inputs: nothing to pseudo-label",
                        ", ".join(map(str, inputs)) if isinstance(inputs, list) else inputs)
    # The model's probability columns come before "error"; a catalog's own columns after it
    # (predict keeps the source's metadata) may be named anything, "prob_..." included.
    columns = list(frame.columns)
    class_names = [c[len(prob_column("")):] for c in columns[:columns.index("error")]
                   if c.startswith(prob_column(""))]
    vote_cols = [c for c in columns if c.startswith(VOTE_PREFIX)]
    if votes and not vote_cols:
        raise ConfigError("--votes needs a decision-tree model (its vote fractions); this one is "
                          "a classifier", str(model))
    keep = read[read["probability"] >= min_confidence]
    if max_per_class is not None:
        keep = (keep.sort_values("probability", ascending=False, kind="stable")
                .groupby("label", sort=False).head(max_per_class))
    keep = keep.sort_values("path", kind="stable")
    catalog = pd.DataFrame({"filename": keep["path"], "label": keep["label"].astype(int),
                            "label_name": keep["label_name"],
                            "confidence": keep["probability"].round(6)})
    if votes:
        catalog = pd.concat([catalog[["filename"]], keep[vote_cols].round(6)], axis=1)
        catalog["predicted"] = keep["label_name"]
    counts = {name: int((keep["label_name"] == name).sum()) for name in class_names}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, catalog.to_csv(index=False))
    predicted = {name: int((read["label_name"] == name).sum()) for name in class_names}
    info = {"model": str(model),
            "inputs": [str(i) for i in inputs] if isinstance(inputs, list) else str(inputs),
            "min_confidence": min_confidence, "max_per_class": max_per_class, "tta": tta,
            "targets": "vote fractions" if votes else "classes",
            "images_read": len(read), "unreadable": len(frame) - len(read),
            "kept": len(catalog), "per_class": counts,
            # How much of each predicted class the threshold keeps: a class kept far less
            # often than the others is one the model is unsure of on these images.
            "kept_fraction_of_predicted": {name: round(counts[name] / predicted[name], 4)
                                           if predicted[name] else 0.0 for name in class_names}}
    write_json(out.with_suffix(".json"), info)
    return info
