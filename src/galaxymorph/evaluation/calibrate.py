"""``galaxymorph.calibrate``: fit a model's abstention threshold (and, if asked, its
temperature, a tree model's question temperatures and taxonomy rules, or its labelling
conventions) on its validation fold, and write the card."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.errors import DataError
from galaxymorph.evaluation.api import fold_logits
from galaxymorph.evaluation.seen import local_ids, model_split_path

log = logging.getLogger(__name__)


def calibrate(model: str | Path = "default", coverage: float = 0.9, out: str | Path | None = None,
              data: str | None = None, label_map: str | None = None,
              split_file: str | Path | None = None, refit_temperature: bool = False,
              conventions: bool = False, batch_size: int = 128,
              device: str = "auto") -> dict[str, Any]:
    """Fit the abstention threshold (and, if asked, the temperature) on the model's validation
    fold and write the model card: in place, or into a copy of the model folder at ``out``.
    ``conventions``: also re-fit each learned labelling convention (``train --noisy-labels``)
    as an affine map of the calibrated log-probabilities on that source's validation images
    (:func:`~galaxymorph.models.calibration.fit_convention_map`), which ``--convention`` then
    uses in place of ``p @ T``.

    For models trained before abstention existed; ``galaxymorph train`` and ``ensemble`` fit it
    themselves. Returns the card's new ``abstention`` entry.
    """

    from galaxymorph.data.splits import Split
    from galaxymorph.errors import ModelError
    from galaxymorph.models.artifact import CARD_FILE
    from galaxymorph.models.calibration import (
        abstention_rule,
        fit_convention_map,
        fit_temperature,
        softmax,
        source_balance,
    )
    from galaxymorph.models.loading import default_model_dir, load_classifier

    if not 0 < coverage <= 1:
        raise DataError(f"coverage must be in (0, 1], got {coverage}")
    folder = default_model_dir() if str(model) == "default" else Path(model)
    if not (folder / CARD_FILE).is_file():
        raise ModelError(f"not a model folder (no {CARD_FILE}; a checkpoint has no card to update)",
                         folder)
    clf = load_classifier(model, device="cpu")
    card = clf.card
    split = Path(split_file) if split_file else model_split_path(model)
    if split is None or not split.exists():
        raise DataError("calibration needs the model's split.json (its validation fold)", folder)
    if clf.is_tree:
        calibrate_tree(clf, Split.load(split), data, label_map, coverage, refit_temperature,
                       batch_size, device)
        return _save_card(card, folder, out)
    logits, y, _, origin = fold_logits(clf, data or card.training_data.get("spec"), label_map,
                                       "val", split, tta=card.tta_default, batch_size=batch_size,
                                       device=device)
    if not len(y):
        raise DataError("the validation fold has no readable images", split)
    if refit_temperature:
        card.temperature = fit_temperature(logits, y, weights=source_balance(origin))
    card.abstention = abstention_rule(softmax(logits, card.temperature), y, coverage)
    if conventions:
        learned = (card.training or {}).get("label_transitions") or {}
        if not learned:
            raise ModelError("the model learned no labelling convention (train --noisy-labels)",
                             folder)
        sources = [s["spec"] for s in (Split.load(split).sources or [])]
        # A packaged card names its sources relative to itself: they are the split's first
        # sources, in the training data's order (weak-label sources come after them).
        given = card.training_data.get("spec") or []
        given = [given] if isinstance(given, str) else list(given)
        probs = softmax(logits, card.temperature)
        for spec, entry in learned.items():
            index = (sources.index(spec) if spec in sources else
                     given.index(spec) if spec in given and len(sources) >= len(given) else None)
            if index is None:
                raise DataError(f"convention '{spec}' is not a source of the model's split",
                                split)
            own = origin == index
            try:
                entry["logit_map"] = fit_convention_map(probs[own], y[own], len(clf.class_names))
            except ValueError as exc:
                raise DataError(f"convention '{spec}': {exc}", split) from exc
    return _save_card(card, folder, out)


def _save_card(card, folder: Path, out: str | Path | None) -> dict[str, Any]:
    """Write ``card`` in place, or into a copy of the model folder at ``out``; its abstention."""
    import shutil

    from galaxymorph.io_utils import write_json
    from galaxymorph.models.artifact import CARD_FILE

    dest = Path(out) if out else folder
    if dest.resolve() != folder.resolve():
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "split.json"):
            if (folder / name).exists():
                shutil.copyfile(folder / name, dest / name)
    write_json(dest / CARD_FILE, card.to_dict())
    return card.abstention


def calibrate_tree(clf, split, data, label_map: str | None, coverage: float,
                   refit_temperature: bool, batch_size: int, device: str) -> None:
    """A decision-tree card re-fitted on its validation fold: the answers' temperature (if
    asked), then every taxonomy's adapter, conventions and abstention rule, as training does."""
    from galaxymorph.data.cache import ImageTensorDataset, decode_all
    from galaxymorph.data.questions import answer_probabilities
    from galaxymorph.data.taxonomies import Taxonomy
    from galaxymorph.data.vote_dataset import open_question_dataset
    from galaxymorph.evaluation.evaluate import dataset_logits
    from galaxymorph.models.calibration import source_balance
    from galaxymorph.models.taxonomy_fit import fit_taxonomy
    from galaxymorph.models.tree import fit_answer_temperature, fit_question_temperatures

    card, schema = clf.card, clf.schema
    given = card.training_data
    specs = data or given.get("spec") or []
    specs = [specs] if isinstance(specs, str) else list(specs)
    ds = open_question_dataset(specs, schema, label_map or given.get("label_map"),
                               weak=[] if data else given.get("weak") or [])
    ds = ds.select_ids(local_ids(ds, split.val))
    decoded = decode_all(ds, clf.preprocessing)
    pos = decoded.require_readable(np.arange(len(ds)), "the validation fold", ds.spec)
    logits, targets = dataset_logits(clf.to(device).engine,
                                     ImageTensorDataset(decoded.images, ds.targets, pos),
                                     batch_size=batch_size, tta=card.tta_default)
    origin = ds.origin[pos]
    if refit_temperature:
        card.temperature = fit_answer_temperature(logits, targets, schema,
                                                  weights=source_balance(origin))
        card.question_temperatures = fit_question_temperatures(logits, targets, schema)
    answers = answer_probabilities(logits, schema, card.question_temperatures or card.temperature)
    specs_all = [p.spec for p in ds.parts]
    noisy = {k for k, spec in enumerate(specs_all)
             if any(spec in e.get("conventions", {}) for e in card.taxonomies.values())}
    for name, entry in list(card.taxonomies.items()):
        card.taxonomies[name] = fit_taxonomy(Taxonomy.from_dict(entry), schema, answers,
                                             ds.class_names, ds.labels[pos], origin, specs_all,
                                             noisy, coverage)
    card.abstention = card.taxonomies[card.default_taxonomy].get("abstention") or {}
