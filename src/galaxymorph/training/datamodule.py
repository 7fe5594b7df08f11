"""Lightning data module: dataset spec -> split -> decode-once cache -> fold loaders.

Synthetic images (``TrainConfig.synthetic``) join the training fold only, matched to the real
classes by name; validation and test folds hold real images alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler

from galaxymorph.data.cache import DecodedImages, ImageTensorDataset, decode_all
from galaxymorph.data.dataset import GalaxyDataset, open_dataset
from galaxymorph.data.splits import Split, make_split
from galaxymorph.data.transforms import TrainAugment
from galaxymorph.errors import DataError
from galaxymorph.training.config import TrainConfig

log = logging.getLogger("galaxymorph")


def default_workers() -> int:
    # Decoded uint8 arrays make loading cheap; on a 2-core machine a worker would only steal
    # compute from the training step.
    n = os.cpu_count() or 1
    return 0 if n <= 2 else min(4, n // 2)


class GalaxyDataModule(L.LightningDataModule):
    def __init__(self, config: TrainConfig, split_path: Path | None = None):
        super().__init__()
        self.config = config
        self.split_path = split_path
        self.pre = config.preprocessing
        self.dataset: GalaxyDataset | None = None
        self.split: Split | None = None
        self.decoded: DecodedImages | None = None
        self.synthetic_sets: list[tuple[DecodedImages, np.ndarray, np.ndarray]] = []
        self.provenance_warnings: list[str] = []
        self.positions: dict[str, np.ndarray] = {}

    # -- set-up -----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Open, split and decode (idempotent; called before the Trainer needs anything)."""
        if self.dataset is not None:
            return
        cfg = self.config
        self.dataset = open_dataset(cfg.data, cfg.label_map)
        if len(self.dataset) == 0:
            raise DataError("dataset has no images (after the label map)", cfg.data)
        self.split = self._make_or_load_split()
        if self.split_path is not None:
            self.split.save(self.split_path)
        self.decoded = decode_all(self.dataset, self.pre, cache=cfg.cache, progress=cfg.progress)
        if self.decoded.errors:
            log.warning("%d unreadable image(s) skipped, e.g. %s", len(self.decoded.errors),
                        next(iter(self.decoded.errors.values())))
        pos_of = {k: n for n, k in enumerate(self.dataset.ids)}
        for fold in ("train", "val", "test"):
            pos = np.array([pos_of[k] for k in self.split.fold(fold)], dtype=np.int64)
            self.positions[fold] = pos[self.decoded.ok[pos]] if len(pos) else pos
        if cfg.synthetic and cfg.synthetic_ratio > 0:
            self._add_synthetic()

    def _make_or_load_split(self) -> Split:
        cfg, ds = self.config, self.dataset
        assert ds is not None
        if cfg.split_file:
            split = Split.load(cfg.split_file)
            known = set(ds.ids)
            missing = [k for f in ("train", "val", "test") for k in split.fold(f) if k not in known]
            if missing:
                raise DataError(f"{len(missing)} id(s) in the split are not in {cfg.data} "
                                f"(first: {missing[0]})", cfg.split_file)
            return split
        groups = None
        if cfg.group_by:
            meta = ds.source.metadata
            if meta is None or cfg.group_by not in meta.columns:
                raise DataError(f"group_by column '{cfg.group_by}' is not in the catalog", cfg.data)
            groups = [str(meta[cfg.group_by].iloc[i]) for i in ds.indices]
        return make_split(ds.ids, ds.labels, seed=cfg.split_seed, fractions=cfg.fractions,
                          groups=groups, spec=cfg.data, label_map=cfg.label_map)

    def _add_synthetic(self) -> None:
        """Per class, add generated images up to ``ratio`` x the largest real training class."""
        cfg, ds = self.config, self.dataset
        assert ds is not None
        train_labels = ds.labels[self.positions["train"]]
        counts = np.bincount(train_labels, minlength=ds.num_classes)
        target = round(cfg.synthetic_ratio * counts.max())
        rng = np.random.default_rng(cfg.seed)
        for spec in cfg.synthetic:
            self._check_provenance(spec)
            syn = open_dataset(spec)
            mapping = {i: ds.class_names.index(n) for i, n in enumerate(syn.class_names)
                       if n in ds.class_names}
            if not mapping:
                raise DataError(f"none of its classes {syn.class_names} is a class of the real data "
                                f"{ds.class_names}", spec)
            labels = np.array([mapping.get(int(lab), -1) for lab in syn.labels])
            decoded = decode_all(syn, self.pre, cache=cfg.cache, progress=cfg.progress)
            chosen = []
            for c in range(ds.num_classes):
                room = max(0, target - int(counts[c]))
                cand = np.flatnonzero((labels == c) & decoded.ok)
                take = cand[rng.permutation(len(cand))[:room]]
                counts[c] += len(take)
                chosen.append(take)
            pos = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
            self.synthetic_sets.append((decoded, labels, pos))
            log.info("added %d synthetic images from %s", len(pos), spec)

    def _check_provenance(self, spec: str) -> None:
        """Warn when the generator behind ``spec`` learned from more than this run's training
        fold: its images may then carry validation/test galaxies into training, and a measured
        gain would be optimistic. Recorded in ``provenance_warnings`` (and the run summary)."""
        from galaxymorph.data.splits import ids_digest
        from galaxymorph.generative.sampling import generated_provenance

        card = generated_provenance(spec)
        if card is None:
            return  # not written by `galaxymorph gan sample`: nothing known about its origin
        split = card.get("generator_split")
        train_ids = self.split.fold("train")
        if split is None:
            why = (f"its generator ({card.get('generator')}) was trained on every image of "
                   f"{card.get('source_data')}, this run's validation and test images included")
        elif split.get("ids_sha256") != ids_digest(train_ids):
            why = (f"its generator ({card.get('generator')}) was trained on the {split.get('fold')} "
                   f"fold of {split.get('file')}, not on this run's training fold")
        else:
            return
        message = (f"{spec}: {why}; train the GAN with --split-file RUN/split.json --fold train "
                   "for a clean comparison")
        self.provenance_warnings.append(message)
        log.warning(message)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    # -- loaders ----------------------------------------------------------------------------
    @property
    def train_labels(self) -> np.ndarray:
        assert self.dataset is not None
        parts = [self.dataset.labels[self.positions["train"]]]
        parts += [labels[pos] for _, labels, pos in self.synthetic_sets]
        return np.concatenate(parts)

    def class_weights(self, power: float = 1.0) -> torch.Tensor:
        """Inverse-frequency weights to the given power (0.5: the milder square-root
        weighting, which trades less majority-class precision for minority recall),
        normalised so that their mean over training images is 1."""
        assert self.dataset is not None
        counts = np.bincount(self.train_labels, minlength=self.dataset.num_classes).astype(float)
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1) ** power, 0.0)
        w *= counts.sum() / max((w * counts).sum(), 1e-12)
        return torch.tensor(w, dtype=torch.float32)

    def fold_dataset(self, fold: str, augment: bool = False) -> torch.utils.data.Dataset:
        assert self.dataset is not None and self.decoded is not None
        aug = None
        if augment:
            aug = TrainAugment(self.dataset.num_classes, self.dataset.chiral_pairs,
                               self.config.chirality, zoom=self.config.zoom, shift=self.config.shift)
        real = ImageTensorDataset(self.decoded.images, self.dataset.labels, self.positions[fold], aug)
        if fold != "train" or not self.synthetic_sets:
            return real
        parts = [real] + [ImageTensorDataset(d.images, labels, pos, aug)
                          for d, labels, pos in self.synthetic_sets]
        return ConcatDataset(parts)

    def _loader(self, fold: str, train: bool) -> DataLoader:
        cfg = self.config
        ds = self.fold_dataset(fold, augment=train and cfg.augment)
        workers = default_workers() if cfg.num_workers is None else cfg.num_workers
        sampler = None
        if train and cfg.imbalance in ("balanced-sampler", "both"):
            labels = self.train_labels
            counts = np.bincount(labels)
            weights = 1.0 / counts[labels]
            gen = torch.Generator().manual_seed(cfg.seed)
            sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                            num_samples=len(labels), replacement=True, generator=gen)
        return DataLoader(ds, batch_size=cfg.batch_size, shuffle=train and sampler is None,
                          sampler=sampler, num_workers=workers, drop_last=False,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
