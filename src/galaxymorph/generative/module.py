"""The GAN as a Lightning module: the recipe's one training step (:func:`train_step`) and
:class:`GanModule`, which draws class-balanced real batches and checkpoints the RNG state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch

from galaxymorph.generative.config import GanConfig
from galaxymorph.generative.real_images import TrainData


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as floats in [-1, 1], what both networks see."""
    return x.float().div_(127.5).sub_(1.0)


def rng_state() -> dict[str, Any]:
    """The global RNG state, saved in every checkpoint so that a resumed run continues bit-exactly."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
            real, y = to_unit(self.images[idx]), self.labels[idx]
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
                                         "epochs": self.current_epoch + 1, "rng": rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["galaxymorph_gan"]
        self.steps = int(state["steps"])
        set_rng_state(state["rng"])


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
