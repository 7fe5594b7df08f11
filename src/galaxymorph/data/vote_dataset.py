"""Several sources, each labelled its own way, as one dataset of decision-tree targets.

A vote table (``gz2_votes``), GZ2's eight classes (``gz2_hart8``), GZ1's four (``gz1`` with
``--label-map gz1-4``), a weak "Spiral" catalog: every image gets the answers its source can
give (:mod:`galaxymorph.data.questions`), and its own class name for stratified splits and
per-source scores. The class list is the union of the sources' classes, in order of first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from galaxymorph.data.classes import VOTES_ONLY
from galaxymorph.data.dataset import GalaxyDataset, open_parts
from galaxymorph.data.label_maps import LabelMap, load_label_map
from galaxymorph.data.questions import (
    Schema,
    Targets,
    combine,
    find_vote_columns,
    implied_answers,
    label_targets,
    vote_targets,
)
from galaxymorph.data.sources import ConcatSource, ImageSource
from galaxymorph.errors import DataError


def open_question_dataset(spec: str | Path | Sequence[str | Path], schema: Schema,
                          label_map: str | Path | LabelMap | None = None,
                          weak: Sequence[str | Path] = ()) -> GalaxyDataset:
    """Open every source and compute its targets; ``dataset.targets`` holds them packed.

    A source's classes are used as they are when every one implies answers of the tree
    (``Round_elliptical``, ``Spiral``...), else through ``label_map``. Vote columns override
    a label's implied answers question by question. An image with nothing to learn (no vote,
    no implied answer) is an error naming its source.
    """
    parts, sources = open_parts(spec, weak)
    lmap = load_label_map(label_map)
    classes: list[str] = []
    keep, labels, origin, targets = [], [], [], []
    offset = 0
    for k, src in enumerate(sources):
        names, raw = _class_names(src, lmap)
        kept = np.flatnonzero(raw >= 0)
        t = _targets(src, names, raw, schema)
        for name in names:
            if name not in classes and np.any(raw == names.index(name)):
                classes.append(name)
        table = np.array([classes.index(n) if n in classes else -1 for n in names], dtype=np.int64)
        keep.append(kept + offset)
        labels.append(table[raw[kept]])
        origin.append(np.full(len(kept), k, dtype=np.int64))
        targets.append(t.packed()[kept])
        offset += len(src)
    source = sources[0] if len(sources) == 1 else ConcatSource(sources)
    return GalaxyDataset(source, np.concatenate(keep), np.concatenate(labels), classes,
                         source.spec, lmap, origin=np.concatenate(origin), parts=parts,
                         targets=np.concatenate(targets))


def _class_names(src: ImageSource, lmap: LabelMap | None) -> tuple[list[str], np.ndarray]:
    """The source's class names and each image's index into them (-1: dropped by the map)."""
    names = list(src.class_names)
    used = sorted(set(src.labels.tolist()))
    readable = all(names[i] == VOTES_ONLY or implied_answers(names[i]) is not None for i in used)
    if readable or lmap is None:
        return names, src.labels.copy()
    return list(lmap.classes), lmap.apply(src.labels, names, where=src.spec)


def _targets(src: ImageSource, names: list[str], raw: np.ndarray, schema: Schema) -> Targets:
    n = len(raw)
    found = find_vote_columns(src.metadata.columns) if src.metadata is not None else None
    votes = (vote_targets(src.metadata, found, schema, n, where=src.spec)
             if found else Targets.empty(n, schema))
    is_label = np.array([i >= 0 and names[i] != VOTES_ONLY for i in raw], dtype=bool)
    labelled = np.flatnonzero(is_label)
    by_label = Targets.empty(n, schema)
    if len(labelled):
        lt = label_targets(raw[labelled], names, schema, where=src.spec)
        by_label.fractions[labelled], by_label.weights[labelled] = lt.fractions, lt.weights
    out = combine(by_label, votes, schema)
    empty = (raw >= 0) & (out.weights.sum(axis=1) <= 0)
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise DataError(f"{int(empty.sum())} image(s) have neither a vote fraction nor a class "
                        f"that answers a question (first: {src.ids[first]})", src.spec)
    return out
