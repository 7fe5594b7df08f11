"""What a GAN run draws: sample grids and ``losses.png`` (losses, discriminator scores, and
the spread that shows mode collapse)."""

from __future__ import annotations

from pathlib import Path

import torch

from galaxymorph.generative.run_files import LOSSES
from galaxymorph.io_utils import atomic_path


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
