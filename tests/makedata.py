"""Small generated datasets for the data-layer tests (no real data, milliseconds to write)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def galaxy_image(label: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 blob whose shape depends on ``label``, with an off-centre spot so it
    has no symmetry (every dihedral transform of it differs)."""
    rng = np.random.default_rng(seed * 97 + label)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c = (size - 1) / 2
    stretch = 1.0 + label  # label 0 round, higher labels more elongated
    r2 = ((xx - c) / (size / 5)) ** 2 + ((yy - c) / (size / (5 * stretch))) ** 2
    img = 200 * np.exp(-r2)[..., None] * np.array([1.0, 0.8, 0.6])
    img[2:5, size // 2 + 3: size // 2 + 8] = [255, 40, 40]  # the asymmetric spot
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_catalog(root: Path, classes: Sequence[str] = ("Elliptical", "Spiral"), per_class: int = 4,
                  size: int = 32, fmt: str = "png", subdir: str = "images",
                  extra: bool = False) -> Path:
    """``root/labels.csv`` + images in ``root/subdir``; filenames in the CSV are bare names, so
    the reader must find them under ``images/``. ``extra`` adds ``ra``/``dec`` columns."""
    from PIL import Image

    root = Path(root)
    img_dir = root / subdir if subdir else root
    img_dir.mkdir(parents=True, exist_ok=True)
    lines = ["filename,label,label_name" + (",ra,dec" if extra else "")]
    for label, name in enumerate(classes):
        for k in range(per_class):
            fname = f"g{label}_{k}.{fmt}"
            Image.fromarray(galaxy_image(label, size, seed=k)).save(img_dir / fname)
            row = f"{fname},{label},{name}"
            if extra:
                row += f",{10 + label + k / 10:.2f},{-5 - k:.1f}"
            lines.append(row)
    csv = root / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def write_h5(path: Path, n_classes: int = 10, per_class: int = 2, size: int = 16,
             images_shape: tuple[int, ...] | None = None, with_ans: bool = True) -> Path:
    """A Galaxy10-layout file: ``images`` (N, S, S, 3) uint8, ``ans`` (N,) uint8."""
    import h5py

    labels = np.repeat(np.arange(n_classes), per_class).astype(np.uint8)
    images = np.stack([galaxy_image(int(lab), size, seed=i) for i, lab in enumerate(labels)])
    if images_shape is not None:
        images = np.zeros(images_shape, dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        if with_ans:
            f.create_dataset("ans", data=labels)
    return Path(path)
