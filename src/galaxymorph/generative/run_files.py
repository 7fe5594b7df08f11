"""The files of a GAN run folder: their names, the EMA generator with its card (what
sampling loads), the checks before a run starts or resumes, and reading its loss log."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from galaxymorph.errors import GalaxymorphError, ModelError
from galaxymorph.generative.config import GanConfig
from galaxymorph.generative.real_images import TrainData
from galaxymorph.io_utils import atomic_path, write_json

CKPT = "last.ckpt"
LOSSES = "losses.csv"
CARD = "gan_card.json"
WEIGHTS = "generator.safetensors"
CARD_FORMAT = "galaxymorph-gan/1"


def gan_card(cfg: GanConfig, data: TrainData, epoch: int, step: int,
             real_spread: float) -> dict[str, Any]:
    """``gan_card.json``: what sampling needs of the generator, and where it came from."""
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


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A new run needs a folder without a GAN checkpoint; a resumed one needs the checkpoint."""
    has_ckpt = (run_dir / CKPT).exists()
    if resume and not has_ckpt:
        raise GalaxymorphError(f"--resume: no {CKPT} to continue from", run_dir)
    if not resume and has_ckpt:
        raise GalaxymorphError(f"already holds a GAN run ({CKPT})", run_dir,
                               hint="pass --resume to continue it, or choose another --out")


def resume_point(ckpt_path: Path) -> int:
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


def log_column(csv_path: Path, name: str) -> list[float]:
    """The values of one column of ``losses.csv`` (none when the log or column is missing)."""
    import pandas as pd

    if not csv_path.is_file():
        return []
    df = pd.read_csv(csv_path)
    return df[name].dropna().astype(float).tolist() if name in df.columns else []


def save_generator(run_dir: Path, ema, card: dict[str, Any]) -> None:
    """The EMA generator's weights (safetensors) and its card, each written atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in ema.module.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CARD_FORMAT})
    write_json(run_dir / CARD, card)
