"""Is this image typical of real galaxies? A score that needs no generated images at all.

The distance of an image's features (the detector network's penultimate layer) to its ``k``
nearest real training images, standardised per feature, turned into a percentile against the
same distance for real *validation* images: ``atypicality`` 0.5 is an ordinary real galaxy,
0.99 is farther from the real set than 99% of real galaxies. It flags images of generators
nobody has trained on, beside p(synthetic), which knows only the generators it saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from galaxymorph.errors import DataError
from galaxymorph.io_utils import atomic_path

TYPICALITY_FILE = "typicality.npz"
MAX_REFERENCE = 4000


@dataclass
class Typicality:
    reference: np.ndarray  # (n, D) standardised features of real training images
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    calibration: np.ndarray  # sorted distances of real validation images
    k: int = 5
    #: Sorted p(synthetic) of the same real calibration images (for the combined score); None
    #: in files written before it existed.
    p_real: np.ndarray | None = None

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, k: int = 5, seed: int = 0) -> Typicality:
        """Reference: real training features; calibration: real validation features."""
        if len(train) > MAX_REFERENCE:
            train = train[np.random.default_rng(seed).permutation(len(train))[:MAX_REFERENCE]]
        mean = train.mean(axis=0)
        scale = train.std(axis=0) + 1e-6
        ref = ((train - mean) / scale).astype(np.float32)
        out = cls(ref, mean.astype(np.float32), scale.astype(np.float32), np.zeros(0, np.float32),
                  int(min(k, len(ref))))
        out.calibration = np.sort(out.distance(val)).astype(np.float32)
        return out

    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Mean distance to the ``k`` nearest real training images."""
        if not len(feats):
            return np.zeros(0)
        x = torch.from_numpy(((np.asarray(feats) - self.mean) / self.scale).astype(np.float32))
        ref = torch.from_numpy(self.reference)
        out = []
        for start in range(0, len(x), 512):
            d = torch.cdist(x[start:start + 512], ref)
            out.append(d.topk(self.k, dim=1, largest=False).values.mean(dim=1))
        return torch.cat(out).double().numpy()

    def atypicality(self, feats: np.ndarray) -> np.ndarray:
        """Share of real validation images closer to the real set than each image (0..1)."""
        return self.percentile(self.distance(feats))

    def percentile(self, distance: np.ndarray) -> np.ndarray:
        """Share of real calibration images with a smaller :meth:`distance` (0..1)."""
        d = np.asarray(distance, dtype=np.float64)
        if not len(self.calibration):
            return np.full(len(d), np.nan)
        return np.searchsorted(self.calibration, d, side="left") / len(self.calibration)

    def p_percentile(self, p: np.ndarray) -> np.ndarray | None:
        """Share of real calibration images with a lower p(synthetic) than each value (0..1),
        the scale on which p(synthetic) and atypicality compare; None without ``p_real``."""
        if self.p_real is None or not len(self.p_real):
            return None
        return np.searchsorted(self.p_real, np.asarray(p, dtype=np.float64), side="left") / len(self.p_real)

    def save(self, path: Path) -> None:
        extra = {} if self.p_real is None else {"p_real": self.p_real}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, reference=self.reference, mean=self.mean, scale=self.scale,
                     calibration=self.calibration, k=np.array(self.k), **extra)

    @classmethod
    def load(cls, path: Path) -> Typicality:
        """Arrays only (``allow_pickle=False``), each checked for shape and finiteness."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in ("reference", "mean", "scale", "calibration", "k")}
                p_real = z["p_real"] if "p_real" in z.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"not a readable typicality file ({exc})", path) from exc
        ref, mean, scale = arrays["reference"], arrays["mean"], arrays["scale"]
        ok = (ref.ndim == 2 and mean.shape == scale.shape == (ref.shape[1],) and len(ref) > 0
              and arrays["calibration"].ndim == 1 and arrays["k"].shape == ()
              and 1 <= int(arrays["k"]) <= len(ref)
              and all(np.isfinite(a).all() for a in (ref, mean, scale, arrays["calibration"]))
              and (scale > 0).all())
        if p_real is not None and not (p_real.ndim == 1 and np.isfinite(p_real).all()
                                       and ((p_real >= 0) & (p_real <= 1)).all()):
            ok = False
        if not ok:
            raise DataError("typicality file has inconsistent arrays", path)
        return cls(ref.astype(np.float32), mean.astype(np.float32), scale.astype(np.float32),
                   np.sort(arrays["calibration"].astype(np.float32)), int(arrays["k"]),
                   None if p_real is None else np.sort(p_real.astype(np.float64)))
