"""A labelled dataset: an image source, an optional label map, and the class list in use.

``open_dataset("catalog:gz1/labels.csv", label_map="gz1-4")`` is the single entry point that
every command goes through, so a spec string means the same thing everywhere. A list of specs
opens several sources as one dataset (``weak`` marks the ones that may only join a training
fold); each image remembers its source, so splits and metrics can be made per source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from galaxymorph.data.classes import VOTES_ONLY, chiral_pairs, match_classes
from galaxymorph.data.label_maps import LabelMap, load_label_map
from galaxymorph.data.sources import ConcatSource, ImageSource
from galaxymorph.errors import DataError


@dataclass(frozen=True)
class SourcePart:
    """One source of a dataset: its spec, and whether its labels are weak (training only)."""

    spec: str
    weak: bool = False


@dataclass
class GalaxyDataset:
    """Images ``source[indices]`` with labels ``labels`` in ``class_names``."""

    source: ImageSource
    indices: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    spec: str
    label_map: LabelMap | None = None
    skipped: list[str] = field(default_factory=list)
    #: ``origin[i]``: which of ``parts`` image ``i`` comes from.
    origin: np.ndarray | None = None
    parts: list[SourcePart] = field(default_factory=list)
    #: Decision-tree targets ``(N, A + Q)`` (see :mod:`galaxymorph.data.questions`), for a
    #: dataset opened with :func:`galaxymorph.data.vote_dataset.open_question_dataset`.
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = np.zeros(len(self.indices), dtype=np.int64)
        if not self.parts:
            self.parts = [SourcePart(self.spec)]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def ids(self) -> list[str]:
        return [self.source.ids[i] for i in self.indices]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def chiral_pairs(self) -> list[tuple[int, int]]:
        """Class pairs that a mirror flip swaps; empty when flips are label-safe."""
        return chiral_pairs(self.class_names)

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as (H, W, 3) uint8; raises ImageReadError naming the file."""
        return self.source.read(int(self.indices[i]))

    def location(self, i: int) -> str:
        return self.source.location(int(self.indices[i]))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def subset(self, positions: np.ndarray | list[int]) -> GalaxyDataset:
        pos = np.asarray(positions, dtype=np.int64)
        return GalaxyDataset(self.source, self.indices[pos], self.labels[pos], self.class_names,
                             self.spec, self.label_map, origin=self.origin[pos], parts=self.parts,
                             targets=None if self.targets is None else self.targets[pos])

    def select_ids(self, ids: list[str]) -> GalaxyDataset:
        """The images with these ids, in this order (for re-creating a saved split)."""
        where = {k: n for n, k in enumerate(self.ids)}
        missing = [k for k in ids if k not in where]
        if missing:
            raise DataError(f"{len(missing)} id(s) of the saved split are not in this dataset "
                            f"(first: {missing[0]}); was the data or label map changed?", self.spec)
        return self.subset([where[k] for k in ids])

    def with_classes(self, class_names: list[str]) -> GalaxyDataset:
        """The same images labelled in ``class_names`` (a model's classes), matched by name:
        the order may differ and classes may be missing, but every class that labels an image
        must have a namesake."""
        if list(class_names) == self.class_names:
            return self
        used = sorted(set(self.labels.tolist()))
        table, unmatched = match_classes(self.class_names, used, list(class_names))
        if unmatched:
            from galaxymorph.errors import DataError

            raise DataError(f"classes {unmatched} of the data are not among the model's classes "
                            f"{list(class_names)}; pass a --label-map that maps them", self.spec)
        labels = np.asarray(table, dtype=np.int64)[self.labels] if len(self.labels) else self.labels
        return replace(self, labels=labels, class_names=list(class_names))


def open_dataset(spec: str | Path | Sequence[str | Path],
                 label_map: str | Path | LabelMap | None = None,
                 weak: Sequence[str | Path] = ()) -> GalaxyDataset:
    """Open a dataset from its spec (or several specs, plus ``weak`` training-only ones), with
    an optional label map (built-in name or file).

    A source whose labels already carry the dataset's class names (e.g. ``gz2_clean`` with
    ``Elliptical``/``Spiral``/...) is matched by name (:func:`~galaxymorph.data.classes.match_classes`,
    as a model's classes are); the label map applies to the others. The
    class list is the label map's, or else the first source's.
    """
    parts, sources = open_parts(spec, weak)
    lmap = load_label_map(label_map)
    classes = list(lmap.classes) if lmap is not None else list(sources[0].class_names)
    keep, labels, origin = [], [], []
    offset = 0
    for k, src in enumerate(sources):
        mapped = _conform(src, lmap, classes)
        kept = np.flatnonzero(mapped >= 0)
        keep.append(kept + offset)
        labels.append(mapped[kept])
        origin.append(np.full(len(kept), k, dtype=np.int64))
        offset += len(src)
    source = sources[0] if len(sources) == 1 else ConcatSource(sources)
    return GalaxyDataset(source, np.concatenate(keep), np.concatenate(labels), classes,
                         source.spec, lmap, origin=np.concatenate(origin), parts=parts)


def open_parts(spec: str | Path | Sequence[str | Path],
               weak: Sequence[str | Path] = ()) -> tuple[list[SourcePart], list[ImageSource]]:
    """The parts of a dataset (``spec`` one or several, then the ``weak`` ones) and each one's
    opened source."""
    from galaxymorph.data.specs import open_source

    specs = [str(spec)] if isinstance(spec, (str, Path)) else [str(s) for s in spec]
    parts = [SourcePart(s) for s in specs] + [SourcePart(str(s), weak=True) for s in weak]
    if not parts:
        raise DataError("no dataset given (--data SPEC)")
    return parts, [open_source(p.spec) for p in parts]


def _conform(source: ImageSource, lmap: LabelMap | None, classes: list[str]) -> np.ndarray:
    """``source``'s raw labels as indices into ``classes`` (-1: dropped by the label map)."""
    raw = source.labels
    used = np.unique(raw)
    names = [source.class_names[int(i)] for i in used]
    if names == [VOTES_ONLY] and classes != [VOTES_ONLY]:
        raise DataError("this catalog holds vote fractions, not class labels: train a "
                        "decision-tree model on it (--questions gz2), or evaluate one",
                        source.spec)
    table, unmatched = match_classes(source.class_names, used.tolist(), classes)
    if not unmatched:
        return np.asarray(table, dtype=np.int64)[raw]
    if lmap is None:
        raise DataError(f"its classes {names} are not all among the dataset's classes {classes}; "
                        "give a --label-map that maps them", source.spec)
    return lmap.apply(raw, source.class_names, where=source.spec)
