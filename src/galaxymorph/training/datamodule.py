"""Lightning data module: opened dataset -> split -> decode-once cache -> fold loaders.

The dataset is opened (and checked) by the caller before the run folder exists, and passed in;
:meth:`GalaxyDataModule.setup` does the rest once and returns a small :class:`Folds` object,
which is all that the training run reads. Synthetic images (``TrainConfig.synthetic``) join the
training fold only, matched to the real classes by name; validation and test folds hold real
images alone, and so do weak-label sources (see :func:`galaxymorph.data.splits.split_by_source`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler

from galaxymorph.data.cache import DecodedImages, ImageTensorDataset, decode_all
from galaxymorph.data.dataset import GalaxyDataset, open_dataset
from galaxymorph.data.splits import Split, make_split, split_by_source
from galaxymorph.data.transforms import TrainAugment
from galaxymorph.data.unlabelled import open_unlabelled
from galaxymorph.errors import ConfigError, DataError
from galaxymorph.processes import loader_worker_init
from galaxymorph.runtime import default_workers
from galaxymorph.training.config import TrainConfig

log = logging.getLogger("galaxymorph")


@dataclass
class Folds:
    """What a run needs of its data once set up: images, labels and positions per fold."""

    dataset: GalaxyDataset
    split: Split
    decoded: DecodedImages
    positions: dict[str, np.ndarray]  # dataset positions of the readable images of each fold
    synthetic: list[tuple[DecodedImages, np.ndarray, np.ndarray]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Unlabelled images of consistency training: per ``config.unlabelled`` source, its decoded
    #: images and the positions used (readable, and not a file of the validation or test fold).
    unlabelled: list[tuple[DecodedImages, np.ndarray]] = field(default_factory=list)
    #: Per unlabelled source: images read, unreadable, and left out as val/test files.
    unlabelled_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The unlabelled image files used, every source's in order (saved with the run, so that
    #: ``evaluate`` can leave out the images the network adapted to).
    unlabelled_files: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.decoded.errors)

    @property
    def counts(self) -> dict[str, int]:
        return {f: len(self.positions[f]) for f in ("train", "val", "test")}

    @property
    def synthetic_count(self) -> int:
        return int(sum(len(p) for _, _, p in self.synthetic))

    @property
    def train_labels(self) -> np.ndarray:
        parts = [self.dataset.labels[self.positions["train"]]]
        parts += [labels[pos] for _, labels, pos in self.synthetic]
        return np.concatenate(parts)

    def origin(self, fold: str) -> np.ndarray:
        """Source index (into ``dataset.parts``) of each image of a fold, in loader order."""
        return self.dataset.origin[self.positions[fold]]

    def source_counts(self) -> list[dict[str, Any]]:
        """Per source: its name (:func:`~galaxymorph.data.specs.source_name`), spec, whether
        its labels are weak, and its readable images in all and per fold (the model card's
        ``training_data.sources``)."""
        from galaxymorph.data.specs import source_name

        parts = self.dataset.parts
        per_fold = {f: np.bincount(self.origin(f), minlength=len(parts)) for f in self.positions}
        return [{"name": source_name(p.spec), "spec": p.spec, "weak": p.weak,
                 "images": int(sum(c[k] for c in per_fold.values())),
                 "counts": {f: int(c[k]) for f, c in per_fold.items()}}
                for k, p in enumerate(parts)]

    def logit_adjustment(self, tau: float = 1.0) -> torch.Tensor:
        """``tau * log(prior)`` of the training fold (logit-adjusted loss)."""
        counts = np.bincount(self.train_labels, minlength=self.dataset.num_classes).astype(float)
        prior = np.maximum(counts, 1) / max(counts.sum(), 1)
        return torch.tensor(tau * np.log(prior), dtype=torch.float32)

    def class_weights(self, power: float = 1.0) -> torch.Tensor:
        """Inverse-frequency weights to the given power (0.5: the milder square-root
        weighting, which trades less majority-class precision for minority recall),
        normalised so that their mean over training images is 1."""
        counts = np.bincount(self.train_labels, minlength=self.dataset.num_classes).astype(float)
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1) ** power, 0.0)
        w *= counts.sum() / max((w * counts).sum(), 1e-12)
        return torch.tensor(w, dtype=torch.float32)


def open_training_data(config: TrainConfig) -> GalaxyDataset:
    """Open every source of ``config`` once and check the data (split file, group column,
    synthetic specs): what can fail about the data fails here, before a run folder exists."""
    from galaxymorph.data.specs import open_source

    if not config.data_specs:
        raise ConfigError("no dataset given (--data SPEC)")
    if config.questions:
        from galaxymorph.data.questions import get_schema
        from galaxymorph.data.vote_dataset import open_question_dataset

        dataset = open_question_dataset(config.data_specs, get_schema(config.questions),
                                        config.label_map, weak=config.weak_data)
    else:
        dataset = open_dataset(config.data_specs, config.label_map, weak=config.weak_data)
    check_data(config, dataset)
    for spec in config.synthetic if config.synthetic_ratio > 0 else []:
        open_source(spec)
    for spec in config.unlabelled:
        open_unlabelled(spec)
    return dataset


def check_data(config: TrainConfig, dataset: GalaxyDataset) -> None:
    """Everything about the data that can fail, checked before the run folder is written."""
    if len(dataset) == 0:
        raise DataError("dataset has no images (after the label map)", config.data_label)
    if config.split_file:
        split = Split.load(config.split_file)
        known = set(dataset.ids)
        missing = [k for f in ("train", "val", "test") for k in split.fold(f) if k not in known]
        if missing:
            raise DataError(f"{len(missing)} id(s) in the split are not in {config.data_label} "
                            f"(first: {missing[0]})", config.split_file)
    if config.group_by:
        meta = dataset.source.metadata
        if meta is None or config.group_by not in meta.columns:
            raise DataError(f"group_by column '{config.group_by}' is not in the catalog",
                            config.data_label)


class GalaxyDataModule(L.LightningDataModule):
    def __init__(self, config: TrainConfig, dataset: GalaxyDataset, split_path: Path | None = None):
        super().__init__()
        self.config = config
        self.dataset = dataset
        self.split_path = split_path
        self.pre = config.preprocessing
        self.folds: Folds | None = None

    # -- set-up -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> Folds:
        """Split, save the split, decode and add synthetic images, once; returns the folds."""
        if self.folds is not None:
            return self.folds
        cfg, ds = self.config, self.dataset
        check_data(cfg, ds)
        split = self._make_or_load_split()
        if self.split_path is not None:
            split.save(self.split_path)
        decoded = decode_all(ds, self.pre, cache=cfg.cache, progress=cfg.progress)
        if decoded.errors:
            log.warning("%d unreadable image(s) skipped, e.g. %s", len(decoded.errors),
                        next(iter(decoded.errors.values())))
        pos_of = {k: n for n, k in enumerate(ds.ids)}
        positions = {}
        decoded.require_readable(np.arange(len(ds)), "the dataset", cfg.data_label)
        for fold in ("train", "val", "test"):
            pos = np.array([pos_of[k] for k in split.fold(fold)], dtype=np.int64)
            # Every fold must hold images: an empty validation fold would surface as
            # EarlyStopping's "val_loss not found", an empty test fold as a zero-size array.
            positions[fold] = decoded.require_readable(pos, f"the {fold} fold", cfg.data_label)
        self.folds = Folds(ds, split, decoded, positions)
        if cfg.synthetic and cfg.synthetic_ratio > 0:
            self._add_synthetic(self.folds)
        for spec in cfg.unlabelled:
            self._add_unlabelled(self.folds, spec)
        return self.folds

    def _add_unlabelled(self, folds: Folds, spec: str) -> None:
        """Decode an unlabelled source; leave out unreadable images (reported) and files of the
        validation or test fold: the network must not adapt to the images it is scored on."""
        from galaxymorph.data.duplicates import files_among

        cfg, ds = self.config, self.dataset
        unl = open_unlabelled(spec)
        decoded = decode_all(unl, self.pre, cache=cfg.cache, progress=cfg.progress)
        held_out = np.concatenate([folds.positions["val"], folds.positions["test"]])
        unl_paths = [unl.location(i) for i in range(len(unl))]
        scored = files_among(unl_paths, [ds.location(int(i)) for i in held_out])
        pos = np.flatnonzero(decoded.ok & ~scored)
        if decoded.errors:
            log.warning("%s: %d unreadable unlabelled image(s) skipped, e.g. %s", spec,
                        len(decoded.errors), next(iter(decoded.errors.values())))
        if scored.any():
            log.warning("%s: %d unlabelled image(s) are files of the validation or test fold and "
                        "were left out", spec, int(scored.sum()))
        if len(pos) == 0:
            raise DataError("no readable unlabelled image outside the validation and test folds",
                            spec)
        folds.unlabelled.append((decoded, pos))
        folds.unlabelled_files.extend(unl_paths[int(i)] for i in pos)
        folds.unlabelled_counts[spec] = {"used": len(pos), "unreadable": len(decoded.errors),
                                         "held_out_files": int(scored.sum())}
        log.info("%d unlabelled images from %s", len(pos), spec)

    def _make_or_load_split(self) -> Split:
        cfg, ds = self.config, self.dataset
        if cfg.split_file:
            return Split.load(cfg.split_file)
        groups = None
        if cfg.group_by:
            meta = ds.source.metadata
            groups = [str(meta[cfg.group_by].iloc[i]) for i in ds.indices]
        groups = self._with_aliases(groups)
        if len(ds.parts) == 1:
            return make_split(ds.ids, ds.labels, seed=cfg.split_seed, fractions=cfg.fractions,
                              groups=groups, spec=cfg.data_label, label_map=cfg.label_map)
        return split_by_source(ds.ids, ds.labels, ds.origin,
                               [{"spec": p.spec, "weak": p.weak} for p in ds.parts],
                               seed=cfg.split_seed, fractions=cfg.fractions, groups=groups,
                               label_map=cfg.label_map)

    def _with_aliases(self, groups: list[str] | None) -> list[str] | None:
        """Keep one file reached by two spellings (or two identical copies) in one fold."""
        from galaxymorph.data.duplicates import alias_groups, merge_groups

        ds = self.dataset
        aliases = alias_groups([ds.location(i) for i in range(len(ds))])
        n_dup = len(aliases) - len(set(aliases))
        if not n_dup:
            return groups
        log.warning("%d image(s) are the same file as another (another path spelling, a link or a "
                    "byte-identical copy); each set is kept in one fold", n_dup)
        return merge_groups(aliases, groups) if groups is not None else aliases

    def _add_synthetic(self, folds: Folds) -> None:
        """Per class, add generated images up to ``ratio`` x the largest real training class."""
        cfg, ds = self.config, self.dataset
        train_labels = ds.labels[folds.positions["train"]]
        counts = np.bincount(train_labels, minlength=ds.num_classes)
        target = round(cfg.synthetic_ratio * counts.max())
        rng = np.random.default_rng(cfg.seed)
        for spec in cfg.synthetic:
            syn = open_dataset(spec)
            self._check_provenance(spec, syn, folds)
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
            folds.synthetic.append((decoded, labels, pos))
            log.info("added %d synthetic images from %s", len(pos), spec)

    def _check_provenance(self, spec: str, syn: GalaxyDataset, folds: Folds) -> None:
        """Warn when the generator behind ``spec`` learned from more than this run's training
        fold: its images may then carry validation/test galaxies into training, and a measured
        gain would be optimistic. Recorded in ``folds.warnings`` (and the run summary)."""
        from galaxymorph.data.provenance import read_sample_card
        from galaxymorph.data.splits import ids_digest

        card = read_sample_card(syn)
        if card is None:
            return  # not written by `galaxymorph gan sample`: nothing known about its origin
        split = card.get("generator_split")
        train_ids = folds.split.fold("train")
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
        folds.warnings.append(message)
        log.warning(message)

    def fold_dataset(self, fold: str, augment: bool = False) -> torch.utils.data.Dataset:
        folds = self.setup()
        aug = None
        tree = self.dataset.targets is not None
        if augment:
            # No question of the tree has a handedness: mirrors leave its targets as they are.
            aug = TrainAugment(self.dataset.num_classes, [] if tree else self.dataset.chiral_pairs,
                               self.config.chirality, zoom=self.config.zoom, shift=self.config.shift,
                               survey=self.config.survey_augment)
        labels = self.dataset.targets if tree else self.dataset.labels
        if tree and fold == "train" and self.config.noisy_label_sources:
            # One more column: the source's transition group (0: clean), read by the loss.
            labels = np.concatenate([labels, self.noise_group_of_images()[:, None]], axis=1
                                    ).astype(np.float32)
        if fold == "train" and self.noisy:
            labels = encode_noise_group(labels, self.noise_group_of_images(), self.dataset.num_classes)
        real = ImageTensorDataset(folds.decoded.images, labels, folds.positions[fold], aug)
        if fold != "train" or not folds.synthetic:
            return real
        parts = [real] + [ImageTensorDataset(d.images, labels, pos, aug)
                          for d, labels, pos in folds.synthetic]
        return ConcatDataset(parts)

    @property
    def noisy(self) -> bool:
        """Does any source's label go through a transition matrix (``noisy_label_sources``)?
        Not in a decision-tree model: there a noisy source only gets its own convention."""
        return bool(self.config.noisy_label_sources) and not self.config.questions

    def noise_group_of_images(self) -> np.ndarray:
        """Per image of the dataset: 0 (clean labels) or its source's transition matrix, 1-based."""
        groups = np.asarray(self.config.noise_groups(), dtype=np.int64)
        if len(groups) != len(self.dataset.parts):
            raise DataError(f"{len(groups)} sources configured but the data has {len(self.dataset.parts)}",
                            self.config.data_label)
        origin = self.dataset.origin if self.dataset.origin is not None else np.zeros(len(self.dataset), int)
        return groups[origin]

    def _loader(self, fold: str, train: bool) -> DataLoader:
        cfg = self.config
        ds = self.fold_dataset(fold, augment=train and cfg.augment)
        weights = self.sampling_weights() if train else None
        sampler = None
        if weights is not None:
            gen = torch.Generator().manual_seed(cfg.seed)
            sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                            num_samples=len(weights), replacement=True, generator=gen)
        return self._data_loader(ds, cfg.batch_size, sampler, shuffle=train and sampler is None)

    def _data_loader(self, ds, batch_size: int, sampler=None, shuffle: bool = False) -> DataLoader:
        """The one place loader settings (workers, pinning) are chosen, for every fold."""
        cfg = self.config
        workers = default_workers("train") if cfg.num_workers is None else cfg.num_workers
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=workers, drop_last=False, persistent_workers=workers > 0,
                          pin_memory=torch.cuda.is_available(),
                          worker_init_fn=loader_worker_init if workers else None)

    def sampling_weights(self) -> np.ndarray | None:
        """Per-image draw weights of the training fold (real images, then synthetic ones, as
        :meth:`fold_dataset` orders them), or ``None`` for plain shuffling: class balance
        (``imbalance`` balanced-sampler/both) times source balance (``source_sampling``)."""
        cfg = self.config
        folds = self.setup()
        labels = folds.train_labels
        weights = np.ones(len(labels))
        if cfg.imbalance in ("balanced-sampler", "both"):
            weights /= np.bincount(labels)[labels]
        if cfg.source_sampling != "proportional" and len(self.dataset.parts) > 1:
            # Synthetic images (after the real ones) count as one more source.
            origin = np.full(len(labels), len(self.dataset.parts))
            origin[:len(folds.positions["train"])] = folds.origin("train")
            sizes = np.bincount(origin)[origin].astype(float)
            weights /= sizes if cfg.source_sampling == "equal" else np.sqrt(sizes)
        elif cfg.imbalance not in ("balanced-sampler", "both"):
            return None
        return weights

    def train_dataloader(self):
        labelled = self._loader("train", train=True)
        if not self.config.unlabelled:
            return labelled
        from lightning.pytorch.utilities import CombinedLoader

        # One unlabelled batch (ratio x the batch size) beside each labelled one: the epoch
        # stays the labelled fold's, and the unlabelled images are drawn with replacement.
        return CombinedLoader({"labelled": labelled,
                               "unlabelled": self._unlabelled_loader(len(labelled.sampler))},
                              mode="min_size")

    def unlabelled_dataset(self) -> UnlabelledViews:
        """Pairs of (weak, strong) views of every usable unlabelled image."""
        cfg, folds = self.config, self.setup()
        weak = TrainAugment(1, zoom=cfg.zoom, shift=cfg.shift)
        # Rotations only: the strong view is made from the weak one, so a mirror flip (which
        # swaps chiral classes) is the weak view's, and the pseudo-label is that view's answer.
        strong = TrainAugment(1, chirality="no-flip", zoom=cfg.zoom, shift=cfg.shift,
                              survey=cfg.strong_augment)
        return UnlabelledViews([(d.images, pos) for d, pos in folds.unlabelled], weak, strong)

    def _unlabelled_loader(self, labelled_draws: int) -> DataLoader:
        cfg = self.config
        ds = self.unlabelled_dataset()
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        sampler = torch.utils.data.RandomSampler(ds, replacement=True, generator=gen,
                                                 num_samples=labelled_draws * cfg.unlabelled_ratio)
        return self._data_loader(ds, cfg.batch_size * cfg.unlabelled_ratio, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def encode_noise_group(labels: np.ndarray, groups: np.ndarray, num_classes: int) -> np.ndarray:
    """Training labels that carry their source's transition matrix: ``label + C * group``, so
    batches stay (images, labels); :func:`decode_noise_group` undoes it in the loss."""
    return np.asarray(labels, dtype=np.int64) + num_classes * np.asarray(groups, dtype=np.int64)


def decode_noise_group(y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(label, group)`` of encoded training labels (group 0: clean)."""
    return y % num_classes, torch.div(y, num_classes, rounding_mode="floor")


class UnlabelledViews(torch.utils.data.Dataset):
    """``(weak view, strong view)`` uint8 pairs of unlabelled images, the strong view made from
    the weak one (FixMatch): the weak view's confident answer is the strong view's target."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]], weak: TrainAugment,
                 strong: TrainAugment):
        self.parts, self.weak, self.strong = parts, weak, strong
        self.index = [(k, int(i)) for k, (_, pos) in enumerate(parts) for i in pos]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, i = self.index[j]
        x = torch.from_numpy(np.array(self.parts[k][0][i]))
        x_weak, _ = self.weak(x, 0)
        x_strong, _ = self.strong(x_weak, 0)
        return x_weak, x_strong
