"""``galaxymorph.evaluate``: score a trained model on a dataset (a saved fold or all of it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.errors import DataError
from galaxymorph.evaluation.seen import (
    SplitHome,
    is_training_data,
    leave_out_unlabelled,
    local_ids,
    model_split_path,
    seen_in_training,
)

if TYPE_CHECKING:  # pragma: no cover
    from galaxymorph.data.splits import Split

log = logging.getLogger(__name__)


def evaluate(model: str | Path = "default", data: str | None = None, label_map: str | None = None,
             split: str | None = None, tta: bool = False, out: str | Path = "evaluation",
             split_file: str | Path | None = None, batch_size: int = 128,
             device: str = "auto", include_seen: bool = False,
             crop: float | None = None, engine: str = "auto", convention: str | None = None,
             taxonomy: str | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md``, ``predictions.csv``, ``errors.png``,
    ``confusion_matrix.png`` and ``risk_coverage.png`` into ``out``.

    ``split=None`` (the default) picks the model's own test fold when ``data`` is the data the
    model was trained on (its ``split.json`` test images are all there), else every image.
    ``"test"``/``"val"``/``"train"`` take that fold of the model's ``split.json`` (run folder,
    or ``split_file``); ``"all"`` every image. Classes are matched by name when the data
    already uses the model's class names; otherwise ``label_map`` (default: the model's own)
    maps them. Images of the model's own training or validation folds are left out of a
    whole-dataset score (and counted) unless ``include_seen``; so are, in any fold, the
    unlabelled images it was trained on (``unlabelled_used.json``). ``crop``: a fixed centre crop
    instead of the model's own framing. ``engine``: ``auto`` (ONNX Runtime on CPU, PyTorch on
    a GPU), ``torch`` or ``onnx``. ``convention``: answer in the labelling convention of one of
    the model's noisy training sources, as ``predict --convention`` does.

    A decision-tree model answers in the taxonomy of the data's classes (``gz2_hart8`` in
    ``gz2-8``, Galaxy10 DECaLS in ``galaxy10``), or in ``taxonomy``; data with vote-fraction
    columns (Kaggle ``ClassN.M``, GZ2 ``tNN_..._debiased``) adds ``vote_rmse`` to the metrics
    and the predicted fractions to ``predictions.csv``; a table of votes alone is scored on
    them only.
    """
    from galaxymorph.data.splits import Split
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, device=device, engine=engine).with_crop(crop)
    card = clf.card
    data = data or card.training_data.get("spec")
    path = Path(split_file) if split_file else model_split_path(model)
    saved = Split.load(path) if path is not None and path.exists() else None
    clf, ds = open_in_taxonomy(clf, data, label_map, taxonomy)
    clf = clf.with_convention(convention)
    notes: list[str] = []
    excluded = 0
    home = SplitHome(saved, ds) if saved is not None else None  # opened once, when needed
    if split is None:
        split = "test" if saved is not None and is_training_data(ds, saved, home) else "all"
    if split != "all":
        if saved is None:
            raise DataError(f"--split {split} needs the model's split.json (a run folder or "
                            "--split-file); use --split all to score every image", str(model))
        # One source of a multi-source model (gz1/ alone): its own images of that fold.
        ds = ds.select_ids(local_ids(ds, saved.fold(split)))
    elif saved is None:
        notes.append("the model has no split.json: could not check whether any of these images "
                     "were used to train it")
    else:
        seen = seen_in_training(ds, saved, home)
        if seen.any():
            if include_seen:
                notes.append(f"{int(seen.sum())} of {len(ds)} images are in the model's own training "
                             "or validation folds; scored anyway (include_seen), so the figures "
                             "are optimistic")
            else:
                notes.append(f"{int(seen.sum())} of {len(ds)} images are in the model's own training "
                             f"or validation folds and were left out; scored the other "
                             f"{int((~seen).sum())} (--include-seen scores them all)")
                excluded = int(seen.sum())
                ds = ds.subset(np.flatnonzero(~seen))
    adapted = leave_out_unlabelled(ds, model, include_seen, notes)
    if adapted is not None:
        excluded += int(adapted.sum())
        ds = ds.subset(np.flatnonzero(~adapted))
    if not len(ds):
        raise DataError("no images left to score", data)
    for note in notes:
        log.warning(note)
    scored = model_logits(clf, ds, tta=tta, batch_size=batch_size, device=device)
    extra = {"split": split, "tta": tta, "model": str(model), "data": data,
             "skipped_unreadable": scored.skipped, "excluded_seen": excluded,
             "notes": notes, "preprocessing": clf.preprocessing.to_dict()} | (
        {"taxonomy": clf.taxonomy.name} if clf.is_tree else {}) | (
        {"convention": convention} if convention else {})
    return _write(out, scored, clf, f"{card.name or card.architecture} on {data} ({split})", extra,
                  {"Notes": "\n".join(f"- {n}" for n in notes)} if notes else None)


def _write(out, scored: ScoredImages, clf, title: str, extra: dict, sections: dict | None):
    from galaxymorph.evaluation.evaluate import write_evaluation, write_vote_evaluation
    from galaxymorph.evaluation.votes import vote_scores

    ds, pos = scored.dataset, scored.positions
    answers = clf.answers(scored.logits) if clf.is_tree else None
    votes = vote_scores(ds, pos, answers, clf.schema) if answers is not None else None
    if votes is not None:
        extra = extra | {"vote_rmse": votes.metrics}
        sections = dict(sections or {}) | {"Vote fractions": votes.markdown()}
    ids = [ds.ids[i] for i in pos]
    if votes is not None and not votes.has_classes:
        return write_vote_evaluation(out, ids, answers, clf.schema, title, extra, sections)
    # Calibrated class probabilities (taxonomy, convention), handed on as log-probabilities.
    log_probs = np.log(np.clip(clf.probabilities(scored.logits, answers), 1e-12, 1.0))
    return write_evaluation(out, scored.labels, log_probs, clf.class_names, 1.0,
                            title=title, extra=extra | {"temperature": clf.temperature},
                            sections=sections, threshold=clf.abstain_threshold, ids=ids,
                            read=lambda row: ds.read(int(pos[row])),
                            answers=(answers, clf.schema) if answers is not None else None)


def open_in_taxonomy(clf, data: str | None, label_map: str | None, taxonomy: str | None = None):
    """``(clf, dataset)``: the data labelled in the model's classes. A decision-tree model
    first takes the taxonomy asked for, or else the one the data's classes belong to (merged
    classes included: Galaxy10 DECaLS's two edge-on classes are ``galaxy10``'s one); other
    data goes through :func:`open_for_model`. A table of vote fractions alone keeps its one
    placeholder class."""
    from galaxymorph.data.classes import VOTES_ONLY
    from galaxymorph.data.dataset import open_dataset
    from galaxymorph.data.taxonomies import Taxonomy, find_taxonomy

    if taxonomy is not None or not clf.is_tree:
        clf = clf.with_taxonomy(taxonomy)
        return clf, open_for_model(data, label_map, clf.class_names,
                                   clf.card.training_data.get("label_map"))
    if label_map is None and data:
        try:
            raw = open_dataset(data, None)
        except DataError:
            raw = None
        if raw is not None:
            used = sorted(set(raw.labels.tolist()))
            if [raw.class_names[i] for i in used] == [VOTES_ONLY]:
                return clf, raw
            known = [Taxonomy.from_dict(e) for e in clf.card.taxonomies.values()]
            fit = find_taxonomy(raw.class_names, used, known)
            if fit is not None:
                tax, table = fit
                labels = np.asarray(table, dtype=np.int64)[raw.labels]
                return clf.with_taxonomy(tax.name), replace(raw, labels=labels,
                                                            class_names=list(tax.classes))
    return clf, open_for_model(data, label_map, clf.class_names,
                               clf.card.training_data.get("label_map"))


def open_for_model(data: str | None, label_map: str | None, class_names: list[str],
                   model_label_map: str | None = None):
    """Open ``data`` labelled in the model's ``class_names``.

    Without an explicit ``label_map``: when every class that labels an image already has a
    namesake among the model's classes (in any order, e.g. a catalog written for this model),
    they are matched by name; otherwise the model's own training label map is applied (e.g.
    GZ1's six raw classes -> the four of gz1-4).
    """
    from galaxymorph.data.classes import match_classes
    from galaxymorph.data.dataset import open_dataset

    if not data:
        raise DataError("no dataset given (--data SPEC) and the model card names none")
    if label_map is None:
        try:
            raw = open_dataset(data)
        except DataError:
            # e.g. a multi-source model's sources (GZ1's raw classes beside GZ2's four names):
            # only the model's own label map reconciles them.
            raw = None
        if raw is not None:
            _, unmatched = match_classes(raw.class_names, sorted(set(raw.labels.tolist())),
                                         class_names)
            if not unmatched:
                return raw.with_classes(class_names)
        label_map = model_label_map
    return open_dataset(data, label_map).with_classes(class_names)


@dataclass
class ScoredImages:
    """Logits of the readable images of ``dataset`` (``positions`` into it, in order)."""

    dataset: Any
    positions: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    skipped: int = 0


def model_logits(clf, ds, tta: bool = False, batch_size: int = 128, device: str = "auto") -> ScoredImages:
    """Decode (through the model's preprocessing and the decode cache) and score ``ds``."""
    from galaxymorph.data.cache import ImageTensorDataset, decode_all
    from galaxymorph.evaluation.evaluate import dataset_logits
    from galaxymorph.runtime import resolve_device

    decoded = decode_all(ds, clf.preprocessing)
    # None readable: one clear error rather than a zero-size array deep in the metrics.
    positions = decoded.require_readable(np.arange(len(ds)), "the dataset", ds.spec)
    items = ImageTensorDataset(decoded.images, ds.labels, positions)
    if resolve_device(device) != clf.device:
        clf.to(device)
    logits, y = dataset_logits(clf.engine, items, batch_size=batch_size, tta=tta, swap=clf.swap)
    return ScoredImages(ds, positions, logits, y, len(decoded.errors))


def fold_logits(clf, data: str | None, label_map: str | None, fold: str = "test",
                split_file: str | Path | Split | None = None, tta: bool = False,
                batch_size: int = 128,
                device: str = "auto") -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Logits and labels of classifier ``clf`` on one fold of ``split_file`` (a path or a loaded
    :class:`~galaxymorph.data.splits.Split`; or ``fold="all"``:
    every image of ``data``), the number of unreadable images skipped, and each scored image's
    source index in the split (all 0 for one source or ``fold="all"``)."""
    from galaxymorph.data.splits import Split

    ds = open_for_model(data, label_map, clf.class_names, clf.card.training_data.get("label_map"))
    split = (None if fold == "all" else
             split_file if isinstance(split_file, Split) else Split.load(split_file))
    if split is not None:
        ds = ds.select_ids(split.fold(fold))
    scored = model_logits(clf, ds, tta=tta, batch_size=batch_size, device=device)
    ids = ds.ids
    origin = (split.origin_of([ids[i] for i in scored.positions]) if split is not None
              else np.zeros(len(scored.labels), dtype=np.int64))
    return scored.logits, scored.labels, scored.skipped, origin


