"""The adversarial training loop: one discriminator and one generator update per step.

Recipe (chosen for stability on a few thousand images and a CPU budget): hinge loss,
spectral-norm projection discriminator, class-conditional BatchNorm generator, Adam with
beta1 = 0 (momentum fights the adversarial game's rotation), an EMA of the generator's weights,
the 8 symmetries of the square on real images, DiffAugment on everything the discriminator
sees, and class-balanced sampling of real images so that the rare classes (the ones worth
augmenting) get as many generator updates as the common ones.

Lightning runs it (:class:`~galaxymorph.generative.module.GanModule`, manual optimisation):
its checkpointing writes ``last.ckpt`` (state dicts, optimiser states, loop state, plus the RNG
state) atomically at the end of every epoch, and its CSV logger writes ``losses.csv``;
``--resume`` picks the checkpoint up and the result is bit-identical to an uninterrupted run on
the same machine.

The pieces, one job each: :mod:`~galaxymorph.generative.config` (the settings),
:mod:`~galaxymorph.generative.real_images` (the decoded real images),
:mod:`~galaxymorph.generative.module` (one training step, the Lightning module),
:mod:`~galaxymorph.generative.epoch_end` (samples, spread, generator and plot each epoch),
:mod:`~galaxymorph.generative.plots`, :mod:`~galaxymorph.generative.run_files` (the run
folder's files); this module runs them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.generative.config import RESUME_OVERRIDES, GanConfig, load_config, save_config
from galaxymorph.generative.epoch_end import EpochEnd
from galaxymorph.generative.module import GanModule
from galaxymorph.generative.real_images import load_train_data
from galaxymorph.generative.run_files import CKPT, LOSSES, check_run_dir, log_column, resume_point
from galaxymorph.runtime import resolve_device

__all__ = ["GanConfig", "train_gan"]


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
    check_run_dir(run_dir, resume)
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
        done = resume_point(ckpt_path)
        say(f"resuming after epoch {done}")
        if done >= cfg.epochs:
            say(f"already trained {done} epochs; pass a larger --epochs to continue")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)

    steps_per_epoch = cfg.steps_per_epoch or max(1, math.ceil(len(data.labels) / cfg.batch_size))
    # The loader only counts steps (the images are on the device); its own generator keeps
    # it from drawing on the global RNG that the training steps use.
    steps = torch.utils.data.DataLoader(range(steps_per_epoch), batch_size=None,
                                        generator=torch.Generator().manual_seed(cfg.seed))
    epoch_end = EpochEnd(run_dir, data, say)
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
    rates = log_column(run_dir / LOSSES, "imgs_per_s")[-20:]
    return {"run_dir": str(run_dir), "epochs": trainer.current_epoch, "steps": module.steps,
            "classes": data.class_names, "images": len(data.labels),
            "imgs_per_s": float(np.median(rates)) if rates else None, "device": str(device)}
