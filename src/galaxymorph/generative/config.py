"""A GAN run's settings: :class:`GanConfig`, saved as the run folder's ``config.yaml`` (and
inside every checkpoint), and what a resumed run may change."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from galaxymorph.errors import ConfigError, GalaxymorphError
from galaxymorph.io_utils import write_text

#: Settings that may change when a run is resumed: how long and where it runs, not what it
#: learns (data, model and optimiser settings come from the saved config).
RESUME_OVERRIDES = ("epochs", "max_minutes", "threads", "device", "sample_every", "log_every")


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


def save_config(cfg: GanConfig, run_dir: Path) -> None:
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
