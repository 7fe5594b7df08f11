"""Deterministic stratified train/val/test splits, saved as ``split.json`` so runs can be audited.

An image id sits in exactly one fold. A dataset of several sources is split per source
(:func:`split_by_source`): each source is stratified on its own, weak-label sources go to the
training fold only, and ``split.json`` records each id's source. With ``groups`` (e.g. the source image a crop or a
synthetic image came from), whole groups are kept in one fold so near-duplicates cannot
leak from training into evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxymorph.errors import DataError
from galaxymorph.io_utils import write_json

FOLDS = ("train", "val", "test")


@dataclass
class Split:
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int
    fractions: tuple[float, float, float]
    spec: str = ""
    label_map: str | None = None
    #: Multi-source datasets: ``[{"spec": ..., "weak": bool}, ...]`` and each id's source index.
    sources: list[dict] | None = None
    source_of: dict[str, int] | None = None

    def fold(self, name: str) -> list[str]:
        if name not in FOLDS:
            raise DataError(f"unknown fold '{name}' (expected one of {FOLDS})")
        return getattr(self, name)

    def origin_of(self, ids: list[str]) -> np.ndarray:
        """Source index of each id (all 0 for a single-source split)."""
        if self.source_of is None:
            return np.zeros(len(ids), dtype=np.int64)
        return np.asarray([self.source_of.get(k, -1) for k in ids], dtype=np.int64)

    def to_dict(self) -> dict:
        out = {"spec": self.spec, "label_map": self.label_map, "seed": self.seed,
               "fractions": list(self.fractions),
               "counts": {f: len(self.fold(f)) for f in FOLDS},
               **{f: self.fold(f) for f in FOLDS}}
        if self.sources is not None and self.source_of is not None:
            out["sources"] = [dict(s) | {"counts": {f: sum(self.source_of[k] == n for k in self.fold(f))
                                                    for f in FOLDS}}
                              for n, s in enumerate(self.sources)]
            out["source_of"] = self.source_of
        return out

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Split:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            split = cls(train=list(raw["train"]), val=list(raw["val"]), test=list(raw["test"]),
                        seed=int(raw["seed"]), fractions=tuple(raw["fractions"]),
                        spec=raw.get("spec", ""), label_map=raw.get("label_map"))
            if "sources" in raw:
                split.sources = [{"spec": str(s["spec"]), "weak": bool(s.get("weak", False))}
                                 for s in raw["sources"]]
                split.source_of = {str(k): int(v) for k, v in dict(raw["source_of"]).items()}
                if any(not 0 <= v < len(split.sources) for v in split.source_of.values()):
                    raise ValueError("source_of names a source that is not listed")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"not a valid split file ({exc})", path) from exc
        split.check_disjoint(where=str(path))
        return split

    def check_disjoint(self, where: str = "split") -> None:
        seen: dict[str, str] = {}
        for f in FOLDS:
            for k in self.fold(f):
                if k in seen:
                    raise DataError(f"image '{k}' is in both '{seen[k]}' and '{f}'", where)
                seen[k] = f


def ids_digest(ids) -> str:
    """SHA-256 of a set of image ids (order-free): names a fold in provenance records."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()


def make_split(ids: list[str], labels: np.ndarray, seed: int = 0,
               fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               groups: list[str] | None = None, spec: str = "",
               label_map: str | None = None) -> Split:
    """Stratified split of ``ids``: per class, each fold gets its fraction (at least one image
    in val and test when a class has three or more)."""
    if len(ids) != len(labels):
        raise DataError(f"{len(ids)} ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        raise DataError("image ids are not unique; cannot make a split", spec)
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise DataError(f"split fractions {fractions} must be >= 0 and sum to 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    # Units to assign: groups when given (all members go together), else single images.
    unit_of = list(groups) if groups is not None else list(ids)
    units: dict[str, list[int]] = {}
    for i, u in enumerate(unit_of):
        units.setdefault(u, []).append(i)
    unit_names = sorted(units)
    # A unit's stratum is the majority label of its members.
    unit_label = np.array([np.bincount(labels[units[u]]).argmax() for u in unit_names])
    folds: dict[str, list[str]] = {f: [] for f in FOLDS}
    for cls in np.unique(unit_label):
        members = [unit_names[i] for i in np.flatnonzero(unit_label == cls)]
        members = [members[i] for i in rng.permutation(len(members))]
        n = len(members)
        n_test = round(n * fractions[2])
        n_val = round(n * fractions[1])
        if n >= 3:
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
            n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        chunks = {"test": members[:n_test], "val": members[n_test:n_test + n_val],
                  "train": members[n_test + n_val:]}
        for f, us in chunks.items():
            for u in us:
                folds[f] += [ids[i] for i in units[u]]
    order = {k: n for n, k in enumerate(ids)}
    for f in FOLDS:
        folds[f].sort(key=order.__getitem__)
    split = Split(folds["train"], folds["val"], folds["test"], seed, tuple(fractions), spec, label_map)
    split.check_disjoint()
    return split


def split_by_source(ids: list[str], labels: np.ndarray, origin: np.ndarray,
                    sources: list[dict], seed: int = 0,
                    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                    groups: list[str] | None = None, label_map: str | None = None) -> Split:
    """Split each source on its own (stratified, the same seed), so every source is represented
    in validation and test in its own proportions and is scored separately; sources marked
    ``weak`` go to the training fold whole (their labels are not trusted for measuring)."""
    origin = np.asarray(origin)
    labels = np.asarray(labels)
    folds: dict[str, list[str]] = {f: [] for f in FOLDS}
    for n, src in enumerate(sources):
        pos = np.flatnonzero(origin == n)
        part_ids = [ids[i] for i in pos]
        if src.get("weak"):
            folds["train"] += part_ids
            continue
        part = make_split(part_ids, labels[pos], seed=seed, fractions=fractions,
                          groups=[groups[i] for i in pos] if groups is not None else None,
                          spec=src["spec"])
        for f in FOLDS:
            folds[f] += part.fold(f)
    order = {k: n for n, k in enumerate(ids)}
    for f in FOLDS:
        folds[f].sort(key=order.__getitem__)
    split = Split(folds["train"], folds["val"], folds["test"], seed, tuple(fractions),
                  " + ".join(s["spec"] for s in sources), label_map,
                  sources=[{"spec": s["spec"], "weak": bool(s.get("weak"))} for s in sources],
                  source_of={k: int(o) for k, o in zip(ids, origin, strict=True)})
    split.check_disjoint()
    return split
