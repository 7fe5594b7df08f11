"""``galaxymorph.evaluate``: score a trained model on a dataset (a saved fold or all of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.errors import DataError


def evaluate(model: str | Path = "default", data: str | None = None, label_map: str | None = None,
             split: str = "test", tta: bool = False, out: str | Path = "evaluation",
             split_file: str | Path | None = None, batch_size: int = 128,
             device: str = "auto", crop: float | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and ``confusion_matrix.png`` into ``out``.

    ``split="test"`` uses the test ids of the model's own ``split.json`` (run folder, or the
    file given), so the numbers are on images the model never trained on; ``split="all"``
    scores every image of ``data``. ``crop``: a fixed centre crop instead of the model's own
    framing.
    """
    from galaxymorph.evaluation.evaluate import write_evaluation
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, device="cpu").with_crop(crop)
    card = clf.card
    data = data or card.training_data.get("spec")
    label_map = label_map if label_map is not None else card.training_data.get("label_map")
    if split != "all":
        path = Path(split_file) if split_file else _model_split(model)
        if path is None or not path.exists():
            raise DataError(f"--split {split} needs the model's split.json (a run folder or "
                            "--split-file); use --split all to score every image", str(model))
    else:
        path = None
    logits, y, skipped = fold_logits(clf, data, label_map, split, path, tta=tta,
                                     batch_size=batch_size, device=device)
    return write_evaluation(
        out, y, logits, clf.class_names, clf.temperature,
        title=f"{card.name or card.architecture} on {data} ({split})",
        extra={"split": split, "tta": tta, "model": str(model), "data": data,
               "skipped_unreadable": skipped, "preprocessing": clf.preprocessing.to_dict()})


def _model_split(model: str | Path) -> Path | None:
    from galaxymorph.models.loading import default_model_dir

    folder = default_model_dir() if str(model) == "default" else Path(model)
    if folder.is_file():
        folder = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    path = folder / "split.json"
    return path if path.exists() else None


def fold_logits(clf, data: str | None, label_map: str | None, fold: str = "test",
                split_file: str | Path | None = None, tta: bool = False, batch_size: int = 128,
                device: str = "auto") -> tuple[np.ndarray, np.ndarray, int]:
    """Logits and labels of classifier ``clf`` on one fold of ``split_file`` (or ``fold="all"``:
    every image of ``data``), and the number of unreadable images skipped."""
    from galaxymorph.data.cache import ImageTensorDataset, decode_all
    from galaxymorph.data.dataset import open_dataset
    from galaxymorph.data.splits import Split
    from galaxymorph.evaluation.evaluate import dataset_logits

    if not data:
        raise DataError("no dataset given (--data SPEC) and the model card names none")
    ds = open_dataset(data, label_map)
    if ds.class_names != clf.class_names:
        raise DataError(f"dataset classes {ds.class_names} differ from the model's "
                        f"{clf.class_names}; pass the right --label-map", data)
    if fold != "all":
        ds = ds.select_ids(Split.load(split_file).fold(fold))
    decoded = decode_all(ds, clf.preprocessing)
    items = ImageTensorDataset(decoded.images, ds.labels, np.flatnonzero(decoded.ok))
    logits, y = dataset_logits(clf.net, items, batch_size=batch_size, tta=tta, swap=clf.swap,
                               device=device)
    return logits, y, len(decoded.errors)
