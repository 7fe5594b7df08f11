"""``galaxymorph.evaluate``: score a trained model on a dataset (a saved fold or all of it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.errors import DataError

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
        split = "test" if saved is not None and _is_training_data(ds, saved, home) else "all"
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
    adapted = _leave_out_unlabelled(ds, model, include_seen, notes)
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


def local_ids(ds, split_ids) -> list[str]:
    """The ids of ``ds`` that ``split_ids`` name, in their order.

    A multi-source split names ids under their source's folder (``gz1/images/x.jpeg``); the
    same image opened on its own is ``images/x.jpeg``. Only this data's own folder may prefix
    it: two surveys' catalogs can reuse a file name for other galaxies.
    """
    from galaxymorph.data.sources import source_root

    have = set(ds.ids)
    root = source_root(ds.source)
    parts = root.parts if root is not None else ()
    prefixes = ["/".join(parts[-d:]) + "/" for d in range(1, len(parts))]
    out = []
    for k in split_ids:
        if k in have:
            out.append(k)
            continue
        local = next((k[len(p):] for p in prefixes if k.startswith(p) and k[len(p):] in have), None)
        if local is not None:
            out.append(local)
    return out


def seen_in_training(ds, saved, home: SplitHome | None = None) -> np.ndarray:
    """Which images of ``ds`` are in the training or validation folds of split ``saved``
    (matched as :func:`local_ids` does). Two catalogs can name different galaxies alike
    (``images/0001.png``): when the split's own data is here, in another folder, a name
    counts only if it is the same file (or one of identical content)."""
    from galaxymorph.data.duplicates import files_among

    seen = set(local_ids(ds, [*saved.train, *saved.val]))
    mask = np.array([i in seen for i in ds.ids], dtype=bool)
    if mask.any():
        files = (home or SplitHome(saved, ds)).files([*saved.train, *saved.val])
        if files is not None:
            candidates = np.flatnonzero(mask)
            mask[candidates] = files_among([ds.location(int(i)) for i in candidates], files)
    return mask


def _is_training_data(ds, saved, home: SplitHome) -> bool:
    """Whether ``ds`` holds the model's own test fold: every test id, and (when the split's
    data is here, in another folder) as the same files, not other images named alike."""
    from galaxymorph.data.duplicates import files_among

    if not _contains(ds.ids, saved.test):
        return False
    files = home.files(saved.test)
    if files is None:
        return True
    position = {k: i for i, k in enumerate(ds.ids)}
    return bool(files_among([ds.location(position[k]) for k in saved.test], files).all())


class SplitHome:
    """Where a single-source split's images live, when its data opens here from another
    folder than ``ds``'s (opened at most once, and only if asked)."""

    def __init__(self, saved, ds) -> None:
        self.saved, self.ds = saved, ds

    @cached_property
    def source(self):
        """The split's own data; None when ids alone must decide (a multi-source split, the
        same folder, or the split's data is not on this machine)."""
        from galaxymorph.data.specs import open_source

        if self.saved.sources is not None or not self.saved.spec:
            return None
        try:
            src = open_source(self.saved.spec)
        except (DataError, OSError, ValueError):
            return None
        root, here = _where(src), _where(self.ds.source)
        return None if root is None or here is None or root == here else src

    def files(self, ids: list[str]) -> list[str] | None:
        """The files of the split's images ``ids`` (None: ids decide)."""
        if self.source is None:
            return None
        return [self.source.location(self._index[k]) for k in ids if k in self._index]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.source.ids)}


def _where(source) -> Path | None:
    """What makes two sources' ids name the same images: an HDF5 file (its ids are row
    numbers), or the folder a catalog's file names are relative to."""
    from galaxymorph.data.sources import H5Source, source_root

    return source.path.resolve() if isinstance(source, H5Source) else source_root(source)


def _contains(ids: list[str], wanted: list[str]) -> bool:
    have = set(ids)
    return bool(wanted) and all(i in have for i in wanted)


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


def model_folder(model: str | Path) -> Path:
    """The run folder of ``model`` (a folder, a checkpoint or weights file in it, or "default")."""
    from galaxymorph.models.loading import default_model_dir

    folder = default_model_dir() if str(model) == "default" else Path(model)
    if folder.is_file():
        folder = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    return folder


def model_split_path(model: str | Path) -> Path | None:
    path = model_folder(model) / "split.json"
    return path if path.exists() else None


def _leave_out_unlabelled(ds, model: str | Path, include_seen: bool,
                          notes: list[str]) -> np.ndarray | None:
    """Which images of ``ds`` the model was trained on without labels (consistency training's
    ``unlabelled_used.json``), with a note; None when they are to be scored (none, or
    ``include_seen``). A network adapted to an image scores it optimistically."""
    from galaxymorph.data.unlabelled import UNLABELLED_USED_FILE, used_among

    adapted = used_among(model_folder(model), [ds.location(i) for i in range(len(ds))])
    if not adapted.any():
        return None
    n = int(adapted.sum())
    if include_seen:
        notes.append(f"{n} of {len(ds)} images are among the model's unlabelled training images; "
                     "scored anyway (include_seen), so the figures are optimistic")
        return None
    notes.append(f"{n} of {len(ds)} images are among the model's unlabelled training images "
                 f"({UNLABELLED_USED_FILE}) and were left out (--include-seen scores them all)")
    return adapted


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
