"""``galaxymorph.ensemble``: combine finished runs into one model folder.

The members must share classes, preprocessing and the validation and test folds of their saved
splits (their training folds may differ), so the ensemble's test fold is unseen by every member. The temperature is refitted on the validation fold for the
ensemble's own logits (averaging makes members' logits less extreme), and the test fold is
scored exactly as a run's is.

OUT/
  model.safetensors, model_card.json   the ensemble (``--model OUT`` everywhere)
  split.json                           the members' common folds (training: their union)
  unlabelled_used.json                 the members' unlabelled training images (if any)
  metrics.json, report.md, confusion_matrix.png   test-fold evaluation
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from galaxymorph.data.unlabelled import read_used, write_used
from galaxymorph.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from galaxymorph.data.splits import Split

PREPROCESSING_FIELDS = ("class_names", "image_size", "crop", "framing", "frame_radii", "chiral_pairs")


def ensemble(runs: list[str | Path], out: str | Path, *, tta: bool | None = None,
             data: str | None = None, label_map: str | None = None, batch_size: int = 128,
             device: str = "auto") -> dict[str, Any]:
    """Write an ensemble of the run folders ``runs`` into ``out`` and return its test metrics.

    ``tta`` defaults to what the first member's card says; ``data``/``label_map`` default to
    the training data the cards record.
    """
    from galaxymorph.evaluation.api import fold_logits
    from galaxymorph.evaluation.evaluate import write_evaluation
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.calibration import (
        abstention_rule,
        fit_temperature,
        softmax,
        source_balance,
    )
    from galaxymorph.models.ensemble import ARCHITECTURE, GalaxyEnsemble
    from galaxymorph.models.loading import Classifier, load_classifier

    if len(runs) < 2:
        raise ModelError("an ensemble needs at least two run folders", str(runs[0] if runs else "."))
    folders = [Path(r) for r in runs]
    members = [load_classifier(f, device="cpu") for f in folders]
    for folder, clf in zip(folders, members, strict=True):
        if clf.is_tree:  # its outputs are answers, its classes cuts on them: not averaged here
            raise ModelError("a decision-tree model (questions) cannot join an ensemble of "
                             "classifiers; ensembles of tree models are not supported yet", folder)
    split = _common_split(folders)
    first = members[0].card
    for folder, clf in zip(folders[1:], members[1:], strict=True):
        for name in PREPROCESSING_FIELDS:
            if getattr(clf.card, name) != getattr(first, name):
                raise ModelError(f"{name} {getattr(clf.card, name)!r} differs from "
                                 f"{folders[0]}'s {getattr(first, name)!r}", folder)
        if clf.card.architecture == ARCHITECTURE:
            raise ModelError("members must be single models, not ensembles", folder)

    tta = first.tta_default if tta is None else tta
    data = data or first.training_data.get("spec")
    label_map = label_map if label_map is not None else first.training_data.get("label_map")
    card = ModelCard(
        architecture=ARCHITECTURE, class_names=list(first.class_names), image_size=first.image_size,
        crop=first.crop, framing=first.framing, frame_radii=first.frame_radii,
        chiral_pairs=first.chiral_pairs, tta_default=tta,
        model_kwargs={"members": [{"architecture": c.card.architecture,
                                   "model_kwargs": c.card.model_kwargs} for c in members]},
        name=Path(out).name, training_data=dict(first.training_data),
        training={"members": [{"run": str(f), "architecture": c.card.architecture,
                               "test_metrics": c.card.metrics} for f, c in zip(folders, members, strict=True)]})
    # PyTorch for this one scoring of new weights; a later load of the folder gets the default engine.
    clf = Classifier(GalaxyEnsemble([c.net for c in members]).eval(), card, str(out), engine_kind="torch")
    val_logits, val_y, _, val_origin = fold_logits(clf, data, label_map, "val", split, tta=tta,
                                                   batch_size=batch_size, device=device)
    card.temperature = (fit_temperature(val_logits, val_y, weights=source_balance(val_origin))
                        if len(val_y) else 1.0)
    card.abstention = abstention_rule(softmax(val_logits, card.temperature), val_y) if len(val_y) else {}
    test_logits, test_y, skipped, _ = fold_logits(clf, data, label_map, "test", split, tta=tta,
                                               batch_size=batch_size, device=device)
    out = Path(out)
    metrics = write_evaluation(
        out, test_y, test_logits, card.class_names, card.temperature,
        title=f"ensemble of {len(members)} on {data} (test fold)",
        extra={"split": "test", "tta": tta, "members": [str(f) for f in folders],
               "skipped_unreadable": skipped}, threshold=card.abstention.get("threshold"),
        sections={"Members": "\n".join(
            f"- {f}: accuracy {c.card.metrics.get('accuracy', float('nan')):.3f}, macro F1 "
            f"{c.card.metrics.get('f1_macro', float('nan')):.3f}" for f, c in zip(folders, members, strict=True))})
    card.metrics = {k: metrics[k] for k in ("n", "accuracy", "f1_macro", "f1_weighted", "ece")}
    save_artifact(out, clf.net, card)
    split.save(out / "split.json")
    # Every unlabelled image any member adapted to, so that evaluate leaves those out too.
    # (none: any earlier record in the folder is removed, not kept stale)
    write_used(out, (r for f in folders for r in read_used(f)))
    return metrics


def _common_split(folders: list[Path]) -> Split:
    """The members' common split. Their validation and test folds must be the same images (the
    ensemble is calibrated and scored there); their training folds may differ (e.g. each
    self-trained on its own pseudo-labels): a saved split never holds an image in two folds, so
    no member trained on the common validation or test images. The ensemble's training fold is the union, so a later overlap check sees every image
    any member learnt from."""
    from galaxymorph.data.splits import Split

    paths = [f / "split.json" for f in folders]
    for p in paths:
        if not p.exists():
            raise ModelError("no split.json: an ensemble is built from run folders", p.parent)
    splits = [Split.load(p) for p in paths]
    first = splits[0]
    merged = Split(list(first.train), list(first.val), list(first.test), first.seed,
                   first.fractions, first.spec, first.label_map,
                   [dict(s) for s in first.sources] if first.sources is not None else None,
                   dict(first.source_of) if first.source_of is not None else None)
    seen = set(merged.train)
    for p, sp in zip(paths[1:], splits[1:], strict=True):
        for fold in ("val", "test"):
            if sorted(sp.fold(fold)) != sorted(first.fold(fold)):
                raise ModelError(f"{fold} fold differs from {paths[0]}'s: members must share their "
                                 "validation and test images, or one member's training images "
                                 "would be in the ensemble's test fold", p)
        new = [k for k in sp.train if k not in seen]
        seen.update(new)
        merged.train.extend(new)
        if merged.source_of is not None and sp.sources is not None and sp.source_of is not None:
            assert merged.sources is not None
            specs = [s["spec"] for s in merged.sources]
            for k in new:
                if k not in sp.source_of:
                    continue  # origin_of() reads an unrecorded id as source -1
                src = sp.sources[sp.source_of[k]]
                if src["spec"] not in specs:
                    merged.sources.append(dict(src))
                    specs.append(src["spec"])
                merged.source_of[k] = specs.index(src["spec"])
        else:  # a member without source records: the union has none either
            merged.sources = merged.source_of = None
    return merged
