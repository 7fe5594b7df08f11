"""Real and generated images side by side, one row per class: the quickest honest look at a GAN.

Real images go through the same crop and resize the GAN was trained on, so differences in the
figure are the generator's, not preprocessing's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from galaxymorph.errors import DataError, GalaxymorphError
from galaxymorph.io_utils import atomic_path


def _strip(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """uint8 ``(N, 3, S, S)`` -> one ``(S, N*(S+pad)-pad, 3)`` row on a white background."""
    n, _, s, _ = images.shape
    out = np.full((s, max(n, 1) * (s + pad) - pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        out[:, i * (s + pad):i * (s + pad) + s] = img.permute(1, 2, 0).numpy()
    return out


def gallery(run_dir: str | Path, out: str | Path, data: str | None = None,
            label_map: str | None = None, n: int = 8, seed: int = 0, device: str = "cpu") -> Path:
    """Save a PNG with ``n`` real and ``n`` generated images for each class the GAN models.

    ``data``/``label_map`` default to the ones the GAN was trained on (from its card); real
    images are matched to the generator's classes by name.
    """
    from galaxymorph.data import open_dataset
    from galaxymorph.data.transforms import Preprocessing, prepare
    from galaxymorph.errors import ImageReadError
    from galaxymorph.generative.sampling import load_generator

    if n < 1:
        raise GalaxymorphError(f"--n must be at least 1, got {n}")
    gen = load_generator(run_dir, device)
    card = gen.card
    spec = data or card.get("data")
    if not spec:
        raise GalaxymorphError("the GAN card records no training data; pass --data SPEC", run_dir)
    lmap = label_map if label_map is not None else (card.get("label_map") if data is None else None)
    ds = open_dataset(spec, lmap)
    pre = Preprocessing(gen.image_size, float(card.get("crop", 1.0)))
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, np.ndarray, np.ndarray]] = []
    for pos, name in enumerate(gen.class_names):
        if name not in ds.class_names:
            raise DataError(f"has no class '{name}' (its classes: {ds.class_names}); pass the "
                            "--data and --label-map the GAN was trained on", spec)
        members = np.flatnonzero(ds.labels == ds.class_names.index(name))
        real: list[torch.Tensor] = []
        for i in rng.permutation(members):
            if len(real) == n:
                break
            try:
                real.append(prepare(ds.read(int(i)), pre))
            except ImageReadError:
                continue
        real_t = torch.stack(real) if real else torch.zeros(0, 3, pre.image_size, pre.image_size,
                                                             dtype=torch.uint8)
        fake = gen.generate(torch.full((n,), pos, dtype=torch.long), seed=seed + pos)
        rows.append((f"{name} ({len(members)} real)", _strip(real_t), _strip(fake)))
    return _plot(rows, Path(out), gen.image_size, n)


def _plot(rows: list[tuple[str, np.ndarray, np.ndarray]], out: Path, size: int, n: int) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    width = max(6.0, 2 * n * max(size, 48) / 64 * 0.9)
    fig, axes = plt.subplots(len(rows), 2, figsize=(width, 1.25 * len(rows) * max(size, 48) / 64 + 0.6),
                             squeeze=False)
    for r, (title, real, fake) in enumerate(rows):
        for c, (img, what) in enumerate(((real, "real"), (fake, "generated"))):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(what)
            if c == 0:
                ax.set_ylabel(title, rotation=0, ha="right", va="center")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
