"""What happens at the end of every GAN epoch, before Lightning's checkpoint: the last loss
row, the fixed-noise sample grid and its spread (the collapse monitor), the EMA generator with
its card, the loss plot, a progress line, and the time limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from galaxymorph.generative.config import GanConfig
from galaxymorph.generative.module import GanModule, to_unit
from galaxymorph.generative.plots import plot_losses, save_grid
from galaxymorph.generative.real_images import TrainData
from galaxymorph.generative.run_files import gan_card, save_generator


def fixed_noise(cfg: GanConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and labels for the sample grids: one row per class, the same every epoch."""
    g = torch.Generator().manual_seed(cfg.seed + 12345)
    n = cfg.samples_per_class
    z = torch.randn(num_classes * n, cfg.z_dim, generator=g)
    y = torch.arange(num_classes).repeat_interleave(n)
    return z, y


class EpochEnd(L.Callback):
    """At each epoch end, before Lightning's checkpoint: the last loss row, the sample grid,
    the EMA generator with its card, the loss plot, a progress line, and the time limit."""

    def __init__(self, run_dir: Path, data: TrainData, say: Callable[[str], None]):
        self.run_dir, self.data, self.say = run_dir, data, say
        self.real_spread = real_spread(data)
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, module: GanModule) -> None:
        cfg, done = module.cfg, module.current_epoch + 1
        extra, spread = {}, ""
        if done % cfg.sample_every == 0 or done == cfg.epochs:
            fixed_z, fixed_y = fixed_noise(cfg, len(self.data.class_names))
            with torch.no_grad():
                grid = module.ema.module(fixed_z.to(module.device), fixed_y.to(module.device))
            save_grid(grid, cfg.samples_per_class, self.run_dir / "samples" / f"epoch_{done:03d}.png")
            extra["spread"] = round(class_spread(grid, fixed_y), 4)
            spread = f"  spread {extra['spread']:.3f} (real {self.real_spread:.3f})"
        last = module.log_window(**extra)
        for logger in trainer.loggers:
            logger.save()
        if last is not None:
            self.say(f"epoch {done}/{cfg.epochs}  step {module.steps}  loss_d {last['loss_d']:.3f}  "
                     f"loss_g {last['loss_g']:.3f}  D(real) {last['d_real']:.2f}  "
                     f"D(fake) {last['d_fake']:.2f}  {last['imgs_per_s']:.0f} img/s{spread}")
        save_generator(self.run_dir, module.ema,
                       gan_card(cfg, self.data, done, module.steps, self.real_spread))
        plot_losses(self.run_dir, self.real_spread)
        if cfg.max_minutes is not None and time.monotonic() - self.started > 60 * cfg.max_minutes:
            if done < cfg.epochs:
                self.say(f"stopping after {cfg.max_minutes:g} min (epoch {done}); --resume continues")
            trainer.should_stop = True


def class_spread(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-pixel standard deviation within each class, averaged over classes.

    The collapse monitor: a generator that ignores its noise draws the same galaxy for every
    ``z`` and its spread falls far below the real images' (``spread`` in ``losses.csv``).
    """
    parts = [images[labels == c].float().std(dim=0).mean() for c in labels.unique()
             if int((labels == c).sum()) > 1]
    return float(torch.stack(parts).mean()) if parts else 0.0


def real_spread(data: TrainData, per_class: int = 64) -> float:
    """:func:`class_spread` of up to ``per_class`` real images of each class: the level a
    generator's samples should reach."""
    g = torch.Generator().manual_seed(0)
    pick = torch.cat([torch.nonzero(data.labels == c).squeeze(1)[
        torch.randperm(int((data.labels == c).sum()), generator=g)[:per_class]]
        for c in range(len(data.class_names))])
    return class_spread(to_unit(data.images[pick]), data.labels[pick])
