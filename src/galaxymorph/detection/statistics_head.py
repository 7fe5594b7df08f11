"""A supervised head on the noise statistics: p(synthetic) for the generators a detector saw.

The detector network learns the easiest generator it is shown and can ignore the others: with
our GAN among its training families, its p(synthetic) ranked a *seen* smooth family (the
eigengalaxy sampler) at AUC 0.79 (docs/detector.md). The sixteen noise statistics
(:mod:`.statistics`) separate those families from real images almost perfectly, so a logistic
regression on them (standardised; fitted on the training fold's real and generated images,
classes weighted equally) catches what the network skipped. The detector's p(synthetic) is
then the larger of ``p_network`` and ``p_statistics``: synthetic by either, with its
threshold still set on real images only. A linear model of sixteen numbers on ~1,000 images does not
overfit, and is stored as plain arrays (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxymorph.detection.statistics import KNOWN_WIDTHS
from galaxymorph.errors import DataError
from galaxymorph.io_utils import atomic_path

STATISTICS_HEAD_FILE = "statistics_head.npz"


@dataclass
class StatisticsHead:
    mean: np.ndarray  # (D,) of the training statistics
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (D,) logistic weights on the standardised statistics
    intercept: float

    @classmethod
    def fit(cls, stats: np.ndarray, labels: np.ndarray, c: float = 1.0) -> StatisticsHead:
        """Logistic regression of ``labels`` (1 synthetic) on ``stats`` (N, D), the classes
        weighted equally (the real side usually outnumbers the generated one)."""
        from sklearn.linear_model import LogisticRegression

        stats, labels = np.asarray(stats, dtype=np.float64), np.asarray(labels).astype(int)
        if stats.ndim != 2 or stats.shape[1] not in KNOWN_WIDTHS or len(stats) != len(labels):
            raise ValueError(f"statistics must be (N, D) with D in {KNOWN_WIDTHS} and one label each")
        if set(np.unique(labels)) != {0, 1}:
            raise ValueError("the statistics head needs real and generated images")
        keep = np.isfinite(stats).all(axis=1)
        stats, labels = stats[keep], labels[keep]
        mean, scale = stats.mean(axis=0), stats.std(axis=0) + 1e-6
        lr = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        lr.fit((stats - mean) / scale, labels)
        return cls(mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))

    @property
    def width(self) -> int:
        return len(self.coef)

    def p(self, stats: np.ndarray) -> np.ndarray:
        """p(synthetic) of each row of ``stats``; a row with a non-finite value gives 0 (the
        network alone decides for it)."""
        z = (np.asarray(stats, dtype=np.float64) - self.mean) / self.scale
        logit = z @ self.coef + self.intercept
        out = 1.0 / (1.0 + np.exp(-np.clip(logit, -60, 60)))
        return np.where(np.isfinite(out), out, 0.0)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, mean=self.mean, scale=self.scale, coef=self.coef,
                     intercept=np.array(self.intercept))

    @classmethod
    def load(cls, path: Path) -> StatisticsHead:
        """Arrays only (``allow_pickle=False``), checked for shape, width and finiteness."""
        try:
            with np.load(path, allow_pickle=False) as z:
                mean, scale, coef, b = (z[k] for k in ("mean", "scale", "coef", "intercept"))
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"not a readable statistics head ({exc})", path) from exc
        ok = (coef.ndim == 1 and coef.shape[0] in KNOWN_WIDTHS and mean.shape == scale.shape
              == coef.shape and b.shape == () and (scale > 0).all()
              and all(np.isfinite(a).all() for a in (mean, scale, coef, b)))
        if not ok:
            raise DataError(f"statistics head has inconsistent arrays (expected {KNOWN_WIDTHS} "
                            "columns, positive scales, finite values)", path)
        return cls(mean.astype(np.float64), scale.astype(np.float64), coef.astype(np.float64),
                   float(b))


def p_either(p_network: np.ndarray, p_statistics: np.ndarray) -> np.ndarray:
    """Synthetic by the network or by the statistics: the more confident of the two. (Not a
    noisy-OR: two confident scores would then lift an odd real image above generated ones that
    only the head knows, and the ranking of a seen family would suffer, docs/detector.md.)"""
    return np.fmax(np.asarray(p_network, dtype=np.float64), np.asarray(p_statistics, dtype=np.float64))
