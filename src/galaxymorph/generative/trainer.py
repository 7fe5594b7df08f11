"""The adversarial training loop: one discriminator and one generator update per step.

Recipe (chosen for stability on a few thousand images and a CPU budget): hinge loss,
spectral-norm projection discriminator, class-conditional BatchNorm generator, Adam with
beta1 = 0 (momentum fights the adversarial game's rotation), an EMA of the generator's weights,
the 8 symmetries of the square on real images, DiffAugment on everything the discriminator
sees, and class-balanced sampling of real images so that the rare classes (the ones worth
augmenting) get as many generator updates as the common ones.

Lightning runs it (:class:`GanModule`, manual optimisation): its checkpointing writes
``last.ckpt`` (state dicts, optimiser states, loop state, plus the RNG state) atomically at the
end of every epoch, and its CSV logger writes ``losses.csv``; ``--resume`` picks the checkpoint
up and the result is bit-identical to an uninterrupted run on the same machine.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from galaxymorph.errors import ConfigError, DataError, GalaxymorphError, ModelError
from galaxymorph.io_utils import atomic_path, write_json, write_text
from galaxymorph.runtime import resolve_device

CKPT = "last.ckpt"
LOSSES = "losses.csv"
CARD = "gan_card.json"
WEIGHTS = "generator.safetensors"
CARD_FORMAT = "galaxymorph-gan/1"


@dataclass
class GanConfig:
    """Everything that defines a GAN run; saved as ``config.yaml`` and inside the checkpoint."""

    data: str = ""
    label_map: str | None = None
    classes: list[str] | None = None  # model only these classes (names of the dataset)
    image_size: int = 64
    crop: float = 1.0  # centre crop before resizing (GZ1: 0.5)
    epochs: int = 20
    batch_size: int = 64
    steps_per_epoch: int | None = None  # default: images / batch size
    z_dim: int = 128
    g_channels: int = 32
    d_channels: int = 32
    loss: str = "hinge"
    d_steps: int = 1  # discriminator updates per generator update
    # Two time-scale update rule (Heusel et al. 2017; SAGAN): a 4x faster discriminator. With
    # equal rates the generator out-paced the discriminator on GZ1 and collapsed each class to
    # one galaxy (spread 0.03 vs 0.12 real); with these it keeps about half the real spread.
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    ema_decay: float = 0.999
    diffaugment: str = "color,translation,cutout"
    symmetry: bool = True  # random rotations/flips of real images
    class_balance: float = 1.0  # 1: every class equally often; 0: natural frequencies
    sample_every: int = 1  # epochs between sample grids
    samples_per_class: int = 8
    log_every: int = 20  # steps per row of losses.csv
    max_images: int | None = None  # use a random subset (quick trials)
    # Train only on one fold of a classifier's split.json, so that generated images added to
    # that classifier's training fold carry nothing of its validation and test images.
    split_file: str | None = None
    fold: str = "train"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None  # stop at the first epoch end after this much training
    cache: bool = True  # decode-once cache under $GALAXYMORPH_HOME/cache

    def __post_init__(self) -> None:
        from galaxymorph.generative.augment import parse_policy
        from galaxymorph.generative.losses import get_losses
        from galaxymorph.generative.networks import IMAGE_SIZES

        if self.image_size not in IMAGE_SIZES:
            raise ConfigError(f"--image-size must be one of {IMAGE_SIZES}, got {self.image_size}")
        for name in ("epochs", "batch_size", "d_steps", "z_dim", "g_channels", "d_channels", "sample_every",
                     "samples_per_class", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % 4:
            raise ConfigError(f"batch_size must be a multiple of 4 (the discriminator compares "
                              f"groups of 4 images), got {self.batch_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.class_balance <= 1.0:
            raise ConfigError(f"class_balance must be in [0, 1], got {self.class_balance}")
        get_losses(self.loss)
        parse_policy(self.diffaugment)
        if self.classes is not None:
            self.classes = [str(c) for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GanConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown GAN config key(s): {', '.join(unknown)}")
        return cls(**raw)


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


def _fixed_noise(cfg: GanConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and labels for the sample grids: one row per class, the same every epoch."""
    g = torch.Generator().manual_seed(cfg.seed + 12345)
    n = cfg.samples_per_class
    z = torch.randn(num_classes * n, cfg.z_dim, generator=g)
    y = torch.arange(num_classes).repeat_interleave(n)
    return z, y


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)


def save_grid(images: torch.Tensor, nrow: int, path: Path) -> Path:
    """Save ``[-1, 1]`` images as one PNG grid, atomically."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(images.float().cpu().add(1).div(2).clamp(0, 1), tmp, nrow=nrow, padding=2,
                   format="png")
    return path


def plot_losses(run_dir: Path, real_spread: float | None = None) -> Path | None:
    """``losses.png`` from ``losses.csv`` (the Lightning CSV log of the run, resumes included)."""
    import pandas as pd

    csv_path = run_dir / LOSSES
    if not csv_path.is_file():
        return None
    df = pd.read_csv(csv_path)
    if df.empty or "loss_d" not in df.columns:
        return None
    df = df.dropna(subset=["loss_d"]).sort_values("step")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.5))
    a.plot(df["step"], df["loss_d"], label="discriminator")
    a.plot(df["step"], df["loss_g"], label="generator")
    a.set(xlabel="step", ylabel="loss", title="losses")
    a.legend()
    b.plot(df["step"], df["d_real"], label="D(real)")
    b.plot(df["step"], df["d_fake"], label="D(fake)")
    b.axhline(0, color="grey", lw=0.5)
    b.set(xlabel="step", ylabel="mean score", title="discriminator scores")
    b.legend()
    marks = df.dropna(subset=["spread"]) if "spread" in df.columns else df.iloc[:0]
    if len(marks):
        c.plot(marks["step"], marks["spread"], marker="o", label="generated (fixed noise)")
    if real_spread is not None:
        c.axhline(real_spread, color="grey", ls="--", label="real")
    c.set(xlabel="step", ylabel="pixel std within class", title="spread (collapse if << real)")
    c.set_ylim(bottom=0)
    c.legend()
    fig.tight_layout()
    with atomic_path(run_dir / "losses.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return run_dir / "losses.png"


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

def _save_config(cfg: GanConfig, run_dir: Path) -> None:
    import yaml

    write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_config(run_dir: str | Path) -> GanConfig:
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise GalaxymorphError("not a GAN run folder: config.yaml is missing", Path(run_dir))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse ({exc})", path) from exc
    return GanConfig.from_dict(raw)


def _card(cfg: GanConfig, data: TrainData, epoch: int, step: int,
          real_spread: float) -> dict[str, Any]:
    return {
        "format": CARD_FORMAT,
        "classes": data.class_names,
        "class_labels": data.class_labels,
        "dataset_classes": data.dataset_classes,
        "class_counts": data.counts,
        "image_size": cfg.image_size,
        "crop": cfg.crop,
        "z_dim": cfg.z_dim,
        "g_channels": cfg.g_channels,
        "data": cfg.data,
        "label_map": cfg.label_map,
        "split": data.split,  # None: every image of `data`
        "epochs": epoch,
        "steps": step,
        "ema_decay": cfg.ema_decay,
        "seed": cfg.seed,
        "real_spread": round(real_spread, 4),
        "weights": WEIGHTS,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    has_ckpt = (run_dir / CKPT).exists()
    if resume and not has_ckpt:
        raise GalaxymorphError(f"--resume: no {CKPT} to continue from", run_dir)
    if not resume and has_ckpt:
        raise GalaxymorphError(f"already holds a GAN run ({CKPT})", run_dir,
                            hint="pass --resume to continue it, or choose another --out")


#: Settings that may change when a run is resumed: how long and where it runs, not what it
#: learns (data, model and optimiser settings come from the saved config).
RESUME_OVERRIDES = ("epochs", "max_minutes", "threads", "device", "sample_every", "log_every")


#: Settings that may change when a run is resumed: how long and where it runs, not what it
#: learns (data, model and optimiser settings come from the saved config).
RESUME_OVERRIDES = ("epochs", "max_minutes", "threads", "device", "sample_every", "log_every")


class GanModule(L.LightningModule):
    """The GAN as a LightningModule with manual optimisation: each training step is one call of
    :func:`train_step` (``d_steps`` discriminator updates, one generator update, the EMA).

    The real images stay in memory on the device and each step draws its class-balanced
    batches from them, so the data loader only counts steps. The global RNG state goes into
    every checkpoint, which is what makes a resumed run continue bit-exactly.
    """

    def __init__(self, cfg: GanConfig, data: TrainData):
        super().__init__()
        from galaxymorph.generative.augment import parse_policy
        from galaxymorph.generative.ema import make_ema
        from galaxymorph.generative.losses import get_losses
        from galaxymorph.generative.networks import Discriminator, Generator

        self.automatic_optimization = False
        self.cfg, self.data = cfg, data
        k = len(data.class_names)
        self.G = Generator(k, cfg.image_size, cfg.z_dim, cfg.g_channels)
        self.D = Discriminator(k, cfg.image_size, cfg.d_channels)
        self.ema = make_ema(self.G, cfg.ema_decay)
        self.d_loss_fn, self.g_loss_fn = get_losses(cfg.loss)
        self.policy = parse_policy(cfg.diffaugment)
        counts = torch.bincount(data.labels, minlength=k).double()
        self.sample_weights = counts[data.labels].pow(-cfg.class_balance)
        self.n_sym = 8 if data.mirror_ok else 4
        self.images, self.labels = data.images, data.labels
        self.steps = 0  # generator updates so far (Lightning's global_step counts both optimisers)
        self._window = np.zeros(4)
        self._window_steps, self._window_seconds = 0, 0.0

    def train(self, mode: bool = True) -> GanModule:
        super().train(mode)
        self.ema.eval()  # the average is only ever evaluated (BatchNorm statistics stay frozen)
        return self

    def configure_optimizers(self):
        cfg = self.cfg
        opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2),
                                 foreach=True)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2),
                                 foreach=True)
        return [opt_g, opt_d]

    def on_fit_start(self) -> None:
        self.images, self.labels = self.images.to(self.device), self.labels.to(self.device)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        from galaxymorph.generative.augment import random_symmetry

        cfg, B = self.cfg, self.cfg.batch_size
        t0 = time.perf_counter()
        batches = []
        for _ in range(cfg.d_steps):
            idx = torch.multinomial(self.sample_weights, B, replacement=True).to(self.device)
            real, y = _to_unit(self.images[idx]), self.labels[idx]
            if cfg.symmetry:
                real, y = random_symmetry(real, y, self.n_sym, self.data.swap)
            batches.append((real, y))
        opt_g, opt_d = self.optimizers()
        out = train_step(self.G, self.D, self.ema, opt_g, opt_d, batches, self.policy,
                         self.d_loss_fn, self.g_loss_fn, backward=self.manual_backward)
        self.steps += 1
        self._window += out
        self._window_steps += 1
        self._window_seconds += time.perf_counter() - t0
        # A full window is logged at once, except on the epoch's last step: that row is
        # logged at the epoch end, with the spread of that epoch's sample grid.
        if self._window_steps >= cfg.log_every and batch_idx < self.trainer.num_training_batches - 1:
            self.log_window()

    def log_window(self, **extra: float) -> dict[str, float] | None:
        """Log the mean of the steps since the last row as one row of ``losses.csv``."""
        if not self._window_steps:
            return None
        means = self._window / self._window_steps
        row = {"epoch": self.current_epoch + 1, "loss_d": float(means[0]),
               "loss_g": float(means[1]), "d_real": float(means[2]), "d_fake": float(means[3]),
               "imgs_per_s": self._window_steps * self.cfg.batch_size * self.cfg.d_steps
               / max(self._window_seconds, 1e-9), **extra}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.steps)
        self._window[:] = 0
        self._window_steps, self._window_seconds = 0, 0.0
        return row

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain types and tensors only, so the checkpoint loads with weights_only=True.
        checkpoint["galaxymorph_gan"] = {"config": self.cfg.to_dict(), "steps": self.steps,
                                         "epochs": self.current_epoch + 1, "rng": _rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["galaxymorph_gan"]
        self.steps = int(state["steps"])
        _set_rng_state(state["rng"])


class _EpochEnd(L.Callback):
    """At each epoch end, before Lightning's checkpoint: the last loss row, the sample grid,
    the EMA generator with its card, the loss plot, a progress line, and the time limit."""

    def __init__(self, run_dir: Path, data: TrainData, say: Callable[[str], None]):
        self.run_dir, self.data, self.say = run_dir, data, say
        self.real_spread = _real_spread(data)
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, module: GanModule) -> None:
        cfg, done = module.cfg, module.current_epoch + 1
        extra, spread = {}, ""
        if done % cfg.sample_every == 0 or done == cfg.epochs:
            fixed_z, fixed_y = _fixed_noise(cfg, len(self.data.class_names))
            with torch.no_grad():
                grid = module.ema.module(fixed_z.to(module.device), fixed_y.to(module.device))
            save_grid(grid, cfg.samples_per_class, self.run_dir / "samples" / f"epoch_{done:03d}.png")
            extra["spread"] = round(_spread(grid, fixed_y), 4)
            spread = f"  spread {extra['spread']:.3f} (real {self.real_spread:.3f})"
        last = module.log_window(**extra)
        for logger in trainer.loggers:
            logger.save()
        if last is not None:
            self.say(f"epoch {done}/{cfg.epochs}  step {module.steps}  loss_d {last['loss_d']:.3f}  "
                     f"loss_g {last['loss_g']:.3f}  D(real) {last['d_real']:.2f}  "
                     f"D(fake) {last['d_fake']:.2f}  {last['imgs_per_s']:.0f} img/s{spread}")
        _save_generator(self.run_dir, module.ema,
                        _card(cfg, self.data, done, module.steps, self.real_spread))
        plot_losses(self.run_dir, self.real_spread)
        if cfg.max_minutes is not None and time.monotonic() - self.started > 60 * cfg.max_minutes:
            if done < cfg.epochs:
                self.say(f"stopping after {cfg.max_minutes:g} min (epoch {done}); --resume continues")
            trainer.should_stop = True


def _trainer_device(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    return {"accelerator": device.type, "devices": 1}


def train_gan(out_dir: str | Path, config: GanConfig | None = None, *, resume: bool = False,
              epochs: int | None = None, overrides: dict[str, Any] | None = None,
              progress: bool = True, echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) a conditional GAN; returns a summary dict.

    With ``resume`` the saved ``config.yaml`` is used and ``config`` is ignored; ``epochs``
    (e.g. to extend a finished run) and the other :data:`RESUME_OVERRIDES` may be changed.
    """
    from lightning.pytorch.callbacks import RichProgressBar

    from galaxymorph.training.callbacks import AtomicModelCheckpoint
    from galaxymorph.training.loggers import ResumableCSVLogger, quiet_lightning

    say = echo or (lambda _msg: None)
    run_dir = Path(out_dir)
    _check_run_dir(run_dir, resume)
    if resume:
        changes = {k: v for k, v in (overrides or {}).items() if v is not None}
        bad = sorted(set(changes) - set(RESUME_OVERRIDES))
        if bad:
            raise ConfigError(f"a resumed run keeps its settings; only {', '.join(RESUME_OVERRIDES)} "
                              f"may change (not {', '.join(bad)})")
        cfg = GanConfig.from_dict({**load_config(run_dir).to_dict(), **changes})
    elif config is None:
        raise ConfigError("train_gan needs a GanConfig (or resume=True)")
    else:
        cfg = config
    if epochs is not None:
        cfg.epochs = int(epochs)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    quiet_lightning()
    device = resolve_device(cfg.device)
    data = load_train_data(cfg, progress=progress)
    torch.manual_seed(cfg.seed)  # after decoding: its data loader draws from the global RNG
    say(f"{len(data.labels)} real images, {len(data.class_names)} classes "
        + ", ".join(f"{n}: {c}" for n, c in zip(data.class_names, data.counts, strict=True))
        + (f" ({data.skipped} unreadable skipped)" if data.skipped else "") + f"; device {device}")
    module = GanModule(cfg, data)
    ckpt_path = run_dir / CKPT
    if resume:
        done = _checked_resume_point(ckpt_path)
        say(f"resuming after epoch {done}")
        if done >= cfg.epochs:
            say(f"already trained {done} epochs; pass a larger --epochs to continue")
    run_dir.mkdir(parents=True, exist_ok=True)
    _save_config(cfg, run_dir)

    steps_per_epoch = cfg.steps_per_epoch or max(1, math.ceil(len(data.labels) / cfg.batch_size))
    # The loader only counts steps (the images are on the device); its own generator keeps
    # it from drawing on the global RNG that the training steps use.
    steps = torch.utils.data.DataLoader(range(steps_per_epoch), batch_size=None,
                                        generator=torch.Generator().manual_seed(cfg.seed))
    epoch_end = _EpochEnd(run_dir, data, say)
    checkpoint = AtomicModelCheckpoint(dirpath=run_dir, filename=CKPT.removesuffix(".ckpt"),
                                       monitor=None, save_top_k=1, enable_version_counter=False,
                                       save_on_train_epoch_end=True)
    trainer = L.Trainer(max_epochs=cfg.epochs, **_trainer_device(device),
                        callbacks=[epoch_end, checkpoint, *([RichProgressBar()] if progress else [])],
                        logger=ResumableCSVLogger(run_dir, name="", version="", metrics_file=LOSSES),
                        enable_progress_bar=progress, enable_model_summary=False,
                        log_every_n_steps=1, num_sanity_val_steps=0)
    try:
        with warnings.catch_warnings():
            # Expected here: the run folder holds config.yaml (and, resumed, the last epochs),
            # and the EMA generator is in eval mode on purpose.
            warnings.filterwarnings("ignore", message=".*exists and is not empty")
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode")
            trainer.fit(module, train_dataloaders=steps,
                        ckpt_path=str(ckpt_path) if resume else None, weights_only=True)
    except RuntimeError as exc:
        if not resume or "state_dict" not in str(exc):
            raise
        raise ModelError(f"checkpoint cannot be resumed ({exc}); did the data or its classes "
                         "change?", ckpt_path) from exc
    rates = _column(run_dir / LOSSES, "imgs_per_s")[-20:]
    return {"run_dir": str(run_dir), "epochs": trainer.current_epoch, "steps": module.steps,
            "classes": data.class_names, "images": len(data.labels),
            "imgs_per_s": float(np.median(rates)) if rates else None, "device": str(device)}


def _checked_resume_point(ckpt_path: Path) -> int:
    """Epochs done by the checkpoint to resume, after checking it is one of ours."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        state = ckpt["galaxymorph_gan"]
        done = int(state["epochs"])
        int(state["steps"])
        if not isinstance(state["rng"].get("torch"), torch.Tensor):
            raise ValueError("no RNG state")
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise ModelError(f"checkpoint cannot be resumed ({type(exc).__name__}: {exc})",
                         ckpt_path) from exc
    return done


def _column(csv_path: Path, name: str) -> list[float]:
    import pandas as pd

    if not csv_path.is_file():
        return []
    df = pd.read_csv(csv_path)
    return df[name].dropna().astype(float).tolist() if name in df.columns else []

def train_step(G, D, ema, opt_g, opt_d, batches: list[tuple[torch.Tensor, torch.Tensor]],
               policy: tuple[str, ...], d_loss_fn, g_loss_fn,
               backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> np.ndarray:
    """One discriminator update per real batch ``(images in [-1, 1], labels)``, then one
    generator update; returns ``[loss_d, loss_g, mean D(real), mean D(fake)]`` (last D step).
    The recipe, in one place: :class:`GanModule` runs it with Lightning's ``manual_backward``."""
    from galaxymorph.generative.augment import diff_augment

    for i, (real, y) in enumerate(batches):
        last = i == len(batches) - 1
        B = real.shape[0]
        z = torch.randn(B, G.z_dim, device=real.device)
        with torch.set_grad_enabled(last):  # only the last fakes are reused for the G step
            fake = G(z, y)
        # Real and fake in one batch (spectral norm has no batch statistics; minibatch-std
        # groups of 4 never straddle the two halves since B is a multiple of 4).
        scores = D(diff_augment(torch.cat([real, fake.detach()]), policy), torch.cat([y, y]))
        d_real, d_fake = scores[:B], scores[B:]
        loss_d = d_loss_fn(d_real, d_fake)
        opt_d.zero_grad(set_to_none=True)
        backward(loss_d)
        opt_d.step()
    # Generator: the last fakes against the updated discriminator (no second G forward).
    D.requires_grad_(False)
    loss_g = g_loss_fn(D(diff_augment(fake, policy), y))
    opt_g.zero_grad(set_to_none=True)
    backward(loss_g)
    opt_g.step()
    D.requires_grad_(True)
    ema.update_parameters(G)
    return np.array([loss_d.item(), loss_g.item(), d_real.mean().item(), d_fake.mean().item()])


def _spread(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-pixel standard deviation within each class, averaged over classes.

    The collapse monitor: a generator that ignores its noise draws the same galaxy for every
    ``z`` and its spread falls far below the real images' (``spread`` in ``losses.csv``).
    """
    parts = [images[labels == c].float().std(dim=0).mean() for c in labels.unique()
             if int((labels == c).sum()) > 1]
    return float(torch.stack(parts).mean()) if parts else 0.0


def _real_spread(data: TrainData, per_class: int = 64) -> float:
    g = torch.Generator().manual_seed(0)
    pick = torch.cat([torch.nonzero(data.labels == c).squeeze(1)[
        torch.randperm(int((data.labels == c).sum()), generator=g)[:per_class]]
        for c in range(len(data.class_names))])
    return _spread(_to_unit(data.images[pick]), data.labels[pick])


def _save_generator(run_dir: Path, ema, card: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in ema.module.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CARD_FORMAT})
    write_json(run_dir / CARD, card)
