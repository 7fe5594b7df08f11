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


def plot_risk_coverage(coverage: np.ndarray, accuracy: np.ndarray, out: str | Path,
                       threshold_coverage: float | None = None) -> Path:
    """Accuracy of the most confident images against the fraction answered."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(100 * np.asarray(coverage), accuracy, lw=1.5)
    if threshold_coverage is not None:
        ax.axvline(100 * threshold_coverage, color="grey", ls="--", lw=1,
                   label="model's abstention threshold")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(100, 0)  # abstaining more goes to the right
    ax.set_xlabel("coverage (% of images answered, most confident first)")
    ax.set_ylabel("accuracy on answered images")
    ax.set_title("Risk-coverage curve", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def plot_image_grid(images: list[np.ndarray], captions: list[str], out: str | Path, title: str,
                    columns: int = 4) -> Path:
    """Images with a caption each (e.g. the most confident mistakes of an evaluation)."""
    plt = _plt()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=7)
    if not images:
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    plt = _plt()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(out)
