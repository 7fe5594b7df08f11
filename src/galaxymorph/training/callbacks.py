"""Lightning callbacks galaxymorph adds: atomic checkpoints, and the run's identity in each one."""

from __future__ import annotations

import os
import time
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


class WallClock(L.Callback):
    """Wall time of training summed over every call of a resumed run (kept in each checkpoint),
    so that a summary never mixes one call's time with the whole run's."""

    def __init__(self) -> None:
        self.before = 0.0
        self.start = time.monotonic()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start = time.monotonic()

    def total(self) -> float:
        return self.before + time.monotonic() - self.start

    def state_dict(self) -> dict:
        return {"wall_seconds": self.total()}

    def load_state_dict(self, state_dict: dict) -> None:
        value = state_dict.get("wall_seconds", 0.0)
        self.before = float(value) if isinstance(value, (int, float)) else 0.0


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"
