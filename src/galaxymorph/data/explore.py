"""Look at a dataset before training on it: class counts, imbalance, and a gallery per class.

Figures are drawn on a bare matplotlib ``Figure`` (Agg canvas), never through pyplot, so they
work without a display and leave the caller's pyplot state alone. Images are cropped and
resized with PIL rather than :func:`~galaxymorph.data.transforms.prepare` so that
``galaxymorph data show`` need not import torch.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.data.dataset import GalaxyDataset
from galaxymorph.data.specs import split_spec
from galaxymorph.errors import ConfigError, ImageReadError
from galaxymorph.io_utils import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: How many images :func:`summarize` tries before giving up on finding the image size.
_SHAPE_PROBES = 50


def summarize(dataset: GalaxyDataset) -> dict[str, Any]:
    """Counts per class, fractions, imbalance ratio and image size: what ``data info`` shows."""
    counts = dataset.class_counts()
    n = len(dataset)
    classes = [{"label": i, "name": name, "count": int(counts[i]),
                "fraction": float(counts[i] / n) if n else 0.0}
               for i, name in enumerate(dataset.class_names)]
    nonzero = counts[counts > 0]
    missing = missing_files(dataset)
    return {
        "spec": dataset.spec,
        "n": n,
        "missing_files": len(missing),
        "missing_examples": missing[:3],
        "image_shape": _first_shape(dataset),
        "classes": classes,
        # max/min over the classes present: how much rarer the rarest class is.
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else None,
        "label_map": dataset.label_map.name if dataset.label_map is not None else None,
    }


def missing_files(dataset: GalaxyDataset) -> list[str]:
    """Image files of ``dataset`` that do not exist (a stat each; HDF5 rows are never missing)."""
    paths = getattr(dataset.source, "paths", None)
    if paths is None:
        return []
    return [str(paths[i]) for i in dataset.indices if not paths[i].is_file()]


def _first_shape(dataset: GalaxyDataset) -> list[int] | None:
    for i in range(min(len(dataset), _SHAPE_PROBES)):
        try:
            return list(dataset.read(i).shape)
        except ImageReadError:
            continue
    return None


def _check_view(image_size: int, crop: float) -> None:
    if not 0.05 <= crop <= 1.0:
        raise ConfigError(f"crop must be a fraction of the image side in [0.05, 1], got {crop}")
    if not 8 <= image_size <= 1024:
        raise ConfigError(f"image_size must be within 8..1024 pixels, got {image_size}")


def _thumbnail(image: np.ndarray, image_size: int, crop: float) -> np.ndarray:
    """Centre crop (fraction of the shorter side) and resize, like training preprocessing."""
    from PIL import Image

    h, w = image.shape[:2]
    side = max(1, round(min(h, w) * crop))
    top, left = (h - side) // 2, (w - side) // 2
    tile = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    if side != image_size:
        tile = tile.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(tile)


def _pick(dataset: GalaxyDataset, label: int, per_class: int, rng: np.random.Generator,
          image_size: int, crop: float) -> tuple[list[np.ndarray], int]:
    """Up to ``per_class`` random readable thumbnails of one class, and how many were skipped."""
    candidates = np.flatnonzero(dataset.labels == label)
    tiles: list[np.ndarray] = []
    skipped = 0
    for pos in rng.permutation(candidates):
        if len(tiles) == per_class:
            break
        try:
            tiles.append(_thumbnail(dataset.read(int(pos)), image_size, crop))
        except ImageReadError:
            skipped += 1  # drawn instead from the next candidate
    return tiles, skipped


def _short_spec(spec: str, limit: int = 60) -> str:
    """The spec, shortened to ``kind:…/parent/file`` or ``kind:…/file`` to fit ``limit``."""
    if len(spec) <= limit:
        return spec
    kind, arg = split_spec(spec)
    prefix, rest = (f"{kind}:", arg or "") if kind != "path" else ("", spec)
    parts = Path(rest).parts
    for keep in (2, 1):
        short = f"{prefix}…/{'/'.join(parts[-keep:])}"
        if len(short) <= limit:
            return short
    return "…" + spec[-(limit - 1):]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _title(dataset: GalaxyDataset, width_in: float, fontsize: float) -> str:
    """One line when it fits the figure width, else spec / label map and count on two."""
    chars = max(20, int(width_in * 72 / (0.66 * fontsize)))  # DejaVu Sans: ~0.6 em a char
    lmap = f"label map {dataset.label_map.name}  ·  " if dataset.label_map is not None else ""
    rest = f"{lmap}{_plural(len(dataset), 'image')}"
    one = f"{_short_spec(dataset.spec, chars)}  ·  {rest}"
    return one if len(one) <= chars else f"{_short_spec(dataset.spec, chars)}\n{rest}"


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, facecolor=fig.get_facecolor())
    return out


def sample_grid(dataset: GalaxyDataset, out_png: str | Path, per_class: int = 8, seed: int = 0,
                image_size: int = 96, crop: float = 1.0) -> Path:
    """Save a gallery with one row of random images per class (class name and count at left).

    Unreadable images are skipped and replaced by others of the same class; the number
    skipped is written under the title. ``crop`` shows what a model trained with that
    centre crop will see.
    """
    from matplotlib.figure import Figure

    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, got {per_class}")
    _check_view(image_size, crop)
    rng = np.random.default_rng(seed)
    counts = dataset.class_counts()
    n = max(len(dataset), 1)
    rows = []
    skipped = 0
    for label in range(dataset.num_classes):
        tiles, bad = _pick(dataset, label, per_class, rng, image_size, crop)
        rows.append(tiles)
        skipped += bad

    n_rows = max(len(rows), 1)
    longest = max((len(w) for c in dataset.class_names for w in textwrap.wrap(c, 20)), default=8)
    cell, title_h = 1.15, 0.75  # inches
    label_w = min(2.3, max(1.5, 0.3 + 0.095 * longest))
    fig_w = label_w + per_class * cell
    title = _title(dataset, fig_w - 0.3, 11)
    if "\n" in title:
        title_h += 0.2
    fig_h = title_h + n_rows * cell + 0.1
    fig = Figure(figsize=(fig_w, fig_h), dpi=100, facecolor="white")
    fig.text(0.5, 1 - 0.1 / fig_h, title, ha="center", va="top", fontsize=11, weight="bold",
             linespacing=1.3)
    note = f"{per_class} random images per class (seed {seed}), crop {crop:g}, {image_size}px"
    if skipped:
        note += f"  ·  {_plural(skipped, 'unreadable image')} skipped"
    fig.text(0.5, 1 - (title_h - 0.2) / fig_h, note, ha="center", va="center", fontsize=8.5,
             color="#b00020" if skipped else "#555555")

    for r, tiles in enumerate(rows):
        top = fig_h - title_h - r * cell  # inches from the bottom
        y_mid = (top - cell / 2) / fig_h
        name = "\n".join(textwrap.wrap(dataset.class_names[r], 20)[:3])
        fig.text(0.08 / fig_w, y_mid, name, ha="left", va="bottom", fontsize=9.5, weight="bold",
                 linespacing=1.1)
        fig.text(0.08 / fig_w, y_mid - 0.04 / fig_h, f"{_plural(int(counts[r]), 'image')} "
                 f"({100 * counts[r] / n:.1f}%)", ha="left", va="top", fontsize=8.5,
                 color="#444444")
        if not tiles:
            fig.text((label_w + 0.1) / fig_w, y_mid, "no readable images in this class",
                     ha="left", va="center", fontsize=9, style="italic", color="#888888")
        for c, tile in enumerate(tiles):
            pad = 0.03
            ax = fig.add_axes(((label_w + c * cell + pad) / fig_w, (top - cell + pad) / fig_h,
                               (cell - 2 * pad) / fig_w, (cell - 2 * pad) / fig_h))
            ax.imshow(tile, interpolation="nearest")
            ax.set_axis_off()
    return _save(fig, out_png)


def class_counts_plot(dataset: GalaxyDataset, out_png: str | Path, log: bool = False) -> Path:
    """Save a horizontal bar chart of images per class, each bar labelled with count and %.

    ``log`` puts counts on a log axis so that a 1.7% class stays visible next to a 70% one.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    counts = dataset.class_counts().astype(float)
    n = max(len(dataset), 1)
    k = max(dataset.num_classes, 1)
    longest = max((len(c) for c in dataset.class_names), default=8)
    fig = Figure(figsize=(4.6 + 0.075 * min(longest, 40), 1.5 + 0.42 * k), dpi=110,
                 facecolor="white")
    ax = fig.add_subplot()
    y = np.arange(dataset.num_classes)
    colors = [_CLASS_COLORS[i % len(_CLASS_COLORS)] for i in range(dataset.num_classes)]
    ax.barh(y, np.where(counts > 0, counts, np.nan), color=colors, height=0.7, log=log)
    ax.set_yticks(y, [textwrap.shorten(c, 40, placeholder="…") for c in dataset.class_names])
    ax.invert_yaxis()  # label 0 at the top, as in the table
    top = counts.max() if counts.size and counts.max() > 0 else 1.0
    if log:
        ax.set_xlim(0.8, top * 12)
    else:
        ax.set_xlim(0, top * 1.32)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    for i, c in enumerate(counts):
        x = c if c > 0 else (0.8 if log else 0)
        ax.text(x, i, f"  {int(c):,}  ({100 * c / n:.1f}%)", va="center", ha="left", fontsize=8.5)
    ax.set_xlabel("images" + (" (log scale)" if log else ""))
    fig.suptitle(_title(dataset, fig.get_figwidth() - 0.3, 9.5), fontsize=9.5, linespacing=1.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", alpha=0.25)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return _save(fig, out_png)


# Colour-blind safe (Okabe-Ito, then Tol muted) so ten Galaxy10 classes stay distinguishable.
_CLASS_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
                 "#332288", "#999933", "#882255", "#44AA99", "#AA4499"]
