"""``galaxymorph.finetune``: a trained galaxymorph model, trained on a user's own labelled galaxies.

This is :func:`galaxymorph.train` (same Lightning module, data module, run folder, resume and
reports) started from a parent model instead of ImageNet or random weights: the parent's
architecture, weights and preprocessing (framing, crop, size, normalisation) come over; its head is
kept when the data's classes are its classes, and a new head is trained otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaxymorph.errors import ConfigError, DataError
from galaxymorph.training.run import RunResult, train

#: Defaults for a few hundred images, under any --config file and explicit values: the whole
#: network at a lower backbone rate, a short cosine schedule with early stopping, label
#: smoothing against over-confidence on a small set; augmentation stays on (train's default).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "transfer": "full", "backbone_lr_mult": 0.1, "lr": 1e-3, "epochs": 15,
    "early_stopping_patience": 5, "batch_size": 32, "label_smoothing": 0.05,
}
#: what the parent decides; a different value would silently break what it learned
FROM_PARENT = ("model", "image_size", "crop", "framing", "frame_radii", "pretrained", "weights_path",
               "dropout")


def finetune(from_model: str | Path = "default", data: str | None = None, out: str | Path = "runs/finetune",
             *, label_map: str | None = None, config_file: str | Path | None = None,
             resume: bool = False, **overrides: Any) -> RunResult:
    """Fine-tune ``from_model`` (``"default"``, a run folder or an ensemble folder) on ``data``.

    ``galaxymorph.finetune("default", data="catalog:my_galaxies.csv", out="runs/mine",
    transfer="last-block")``; other keywords are :class:`~galaxymorph.training.config.TrainConfig`
    fields (epochs, lr, imbalance, seed, ...). ``resume=True`` continues an interrupted run.
    """
    if resume:
        return train(out=out, resume=True, **overrides)
    given = sorted(k for k in FROM_PARENT if overrides.get(k) is not None)
    if given:
        raise ConfigError(f"{', '.join(given)} come(s) from the parent model when fine-tuning; "
                          "leave them out (or use `galaxymorph train` for a new architecture)")
    if not data:
        raise ConfigError("no dataset given (--data SPEC)")
    _check_classes(data, label_map)
    from galaxymorph.models.parent import parent_card
    from galaxymorph.training.config import read_yaml

    _, card = parent_card(from_model)
    # The parent's preprocessing: a network sees galaxies only as it learnt to see them.
    given_by_parent = {"model": card.architecture, "image_size": card.image_size, "crop": card.crop,
                       "framing": card.framing, "frame_radii": card.frame_radii}

    from_file = read_yaml(config_file) if config_file else {}
    values = {k: v for k, v in FINETUNE_DEFAULTS.items() if k not in from_file} | {
        k: v for k, v in overrides.items() if v is not None}
    return train(out=out, config_file=config_file, data=data, label_map=label_map,
                 init_from=str(from_model), **values | given_by_parent)


def _check_classes(data: str, label_map: str | None) -> None:
    from galaxymorph.data.dataset import open_dataset

    ds = open_dataset(data, label_map)
    present = sorted({ds.class_names[int(i)] for i in set(ds.labels.tolist())})
    if len(present) < 2:
        raise DataError(f"the data has {'only the class ' + repr(present[0]) if present else 'no labelled images'}"
                        "; a classifier needs images of two or more classes", data)
