"""The real images a GAN learns from: opened, filtered to the modelled classes (and to one
fold of a classifier's split), decoded once through the shared cache and kept in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from galaxymorph.errors import ConfigError, DataError
from galaxymorph.generative.config import GanConfig


@dataclass
class TrainData:
    """Decoded real images (uint8, in memory) with labels re-indexed to the modelled classes."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64 in 0..K-1
    class_names: list[str]  # K modelled classes
    class_labels: list[int]  # their label in the dataset (what sampled catalogs record)
    dataset_classes: list[str]
    swap: list[int] | None  # mirror label permutation over the K classes
    mirror_ok: bool  # False when a modelled class's mirror twin is not modelled
    skipped: int = 0
    counts: list[int] = field(default_factory=list)
    split: dict[str, str] | None = None  # which fold of which split, when restricted


def load_train_data(cfg: GanConfig, progress: bool = True) -> TrainData:
    """Open, filter and decode the real images once (through the shared decode cache)."""
    from galaxymorph.data import open_dataset
    from galaxymorph.data.cache import decode_all
    from galaxymorph.data.classes import chiral_pairs
    from galaxymorph.data.transforms import Preprocessing, swap_table

    if not cfg.data:
        raise ConfigError("no training data: pass --data SPEC")
    ds = open_dataset(cfg.data, cfg.label_map)
    split = None
    if cfg.split_file:
        from galaxymorph.data.splits import Split, ids_digest

        fold_ids = Split.load(cfg.split_file).fold(cfg.fold)
        ds = ds.select_ids(fold_ids)
        split = {"file": str(Path(cfg.split_file).resolve()), "fold": cfg.fold,
                 "ids_sha256": ids_digest(fold_ids)}
    names = list(ds.class_names)
    wanted = cfg.classes or names
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(f"class(es) {missing} are not in the dataset; it has {names}", cfg.data)
    keep_labels = [names.index(c) for c in wanted]
    pos = np.flatnonzero(np.isin(ds.labels, keep_labels))
    if cfg.max_images is not None and len(pos) > cfg.max_images:
        rng = np.random.default_rng(cfg.seed)
        pos = np.sort(rng.choice(pos, size=cfg.max_images, replace=False))
    if len(pos) == 0:
        raise DataError(f"no images of class(es) {wanted}", cfg.data)
    sub = ds.subset(pos)
    decoded = decode_all(sub, Preprocessing(cfg.image_size, cfg.crop), cache=cfg.cache,
                         progress=progress)
    ok = np.flatnonzero(decoded.ok)
    if len(ok) < 2:
        raise DataError(f"only {len(ok)} readable image(s); a GAN needs more", cfg.data)
    remap = {lab: k for k, lab in enumerate(keep_labels)}
    labels = np.array([remap[int(v)] for v in sub.labels[ok]], dtype=np.int64)
    images = torch.from_numpy(np.ascontiguousarray(decoded.images[ok]))
    counts = np.bincount(labels, minlength=len(wanted)).tolist()
    empty = [wanted[k] for k, c in enumerate(counts) if c == 0]
    if empty:
        raise DataError(f"class(es) {empty} have no readable images", cfg.data)
    # A mirror turns a clockwise spiral into an anticlockwise one: fine when both are modelled
    # (swap the labels), not when only one is (then rotations only).
    pairs = [(a, b) for a, b in chiral_pairs(names) if a in keep_labels or b in keep_labels]
    mirror_ok = all(a in keep_labels and b in keep_labels for a, b in pairs)
    swap = swap_table(len(wanted), [(remap[a], remap[b]) for a, b in pairs]) if mirror_ok else None
    return TrainData(images, torch.from_numpy(labels), list(wanted), keep_labels, names, swap,
                     mirror_ok, skipped=len(decoded.errors), counts=counts, split=split)
