"""Lightning callbacks galaxymorph adds: atomic checkpoints, and the run's identity in each one."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that writes to a temporary file and renames it, so a kill during the
    write leaves the previous ``last.ckpt`` intact for ``--resume``."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        tmp = f"{filepath}.tmp"
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)


class RunInfo(L.Callback):
    """Stores the resolved config, classes and preprocessing inside every checkpoint
    (plain types only, so the checkpoint loads with ``weights_only=True``)."""

    def __init__(self, info: dict):
        self.info = info

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["galaxymorph"] = self.info


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"
