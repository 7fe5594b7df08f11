"""A labelled dataset: an image source, an optional label map, and the class list in use.

``open_dataset("catalog:gz1/labels.csv", label_map="gz1-4")`` is the single entry point that
every command goes through, so a spec string means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxymorph.data.classes import chiral_pairs
from galaxymorph.data.label_maps import LabelMap, load_label_map
from galaxymorph.data.sources import ImageSource
from galaxymorph.errors import ImageReadError


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
                             self.spec, self.label_map)

    def select_ids(self, ids: list[str]) -> GalaxyDataset:
        """The images with these ids, in this order (for re-creating a saved split)."""
        where = {k: n for n, k in enumerate(self.ids)}
        missing = [k for k in ids if k not in where]
        if missing:
            from galaxymorph.errors import DataError

            raise DataError(f"{len(missing)} id(s) of the saved split are not in this dataset "
                            f"(first: {missing[0]}); was the data or label map changed?", self.spec)
        return self.subset([where[k] for k in ids])

    def metadata_row(self, i: int) -> dict:
        meta = self.source.metadata
        return {} if meta is None else meta.iloc[int(self.indices[i])].to_dict()

    def first_readable(self, start: int = 0) -> int:
        """Position of the first image at or after ``start`` that decodes (for previews)."""
        for i in range(start, len(self)):
            try:
                self.read(i)
                return i
            except ImageReadError:
                continue
        raise ImageReadError("no readable image in the dataset", self.spec)


def open_dataset(spec: str | Path, label_map: str | Path | LabelMap | None = None) -> GalaxyDataset:
    """Open a dataset from its spec, with an optional label map (built-in name or file)."""
    from galaxymorph.data.specs import open_source

    source = open_source(str(spec))
    lmap = load_label_map(label_map)
    raw = source.labels
    if lmap is None:
        keep = np.arange(len(raw))
        return GalaxyDataset(source, keep, raw.copy(), list(source.class_names), source.spec)
    mapped = lmap.apply(raw, source.class_names, where=source.spec)
    keep = np.flatnonzero(mapped >= 0)
    return GalaxyDataset(source, keep, mapped[keep], list(lmap.classes), source.spec, lmap)
