"""Figures of a run: confusion matrix and training curves (matplotlib, Agg, atomic writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxymorph.io_utils import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: np.ndarray | list, class_names: list[str], out: str | Path,
                          title: str = "Confusion matrix (rows: true, normalised per row)") -> Path:
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2.5, 1.0 * k + 2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), class_names, rotation=35, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, out)


def plot_curves(history: dict[str, list[float]], out: str | Path,
                pairs: tuple[tuple[str, str, str], ...] = (("train_loss", "val_loss", "loss"),
                                                           ("train_acc", "val_acc", "accuracy"))) -> Path:
    """One panel per (train key, val key, title); x is the epoch."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 3.6))
    axes = np.atleast_1d(axes)
    for ax, (tr, va, title) in zip(axes, pairs, strict=True):
        for key, style in ((tr, "-o"), (va, "-s")):
            ys = history.get(key, [])
            if ys:
                ax.plot(range(1, len(ys) + 1), ys, style, ms=3, label=key.split("_")[0])
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, out)


def plot_series(values: list[float], out: str | Path, title: str, xlabel: str = "step",
                ylabel: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(values, lw=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    plt = _plt()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(out)
