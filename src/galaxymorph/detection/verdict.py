"""One calibrated verdict from a detector's three parts.

A detector knows three things about an image, each on its own scale:

* ``p_network``: the network's p(synthetic), sharp on the generators it trained on;
* ``p_statistics``: the logistic head on the sixteen noise statistics (:mod:`.statistics_head`);
* ``atypicality``: how far the noise statistics lie from every real training image
  (:mod:`.typicality`), which needs no generated image at all.

:class:`Verdict` turns them into one ``synthetic_score`` in (0, 1), a logistic model on the
parts' transforms (log-odds of the two probabilities, the log of the typicality distance),
each standardised on real images, with **non-negative weights**: the score never falls when a
part says "more synthetic". It decides with one threshold on that score, set on real images
only at the detector's false-alarm rate (:func:`~.scoring.threshold_at_false_alarm`).

A score fitted on the families the network already catches would lean on the network and
dilute the atypicality, the one part that knows generators nobody trained on. The score is
therefore the larger of two such logistic models (still monotone in every part): one fitted on
the detector's generated validation images as they are, one on the same images *held out*
(the statistics head refitted without their family, the network given no say), so that a fake
only the fake-free parts catch is scored as such (:mod:`.calibration` fits both).
:meth:`Verdict.explain` says which part flagged an image: the fewest parts whose pull, over a
typical real image's, crosses the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.errors import DataError

#: The parts a verdict may combine, in order, and what users see them as.
PARTS = ("p_network", "p_statistics", "atypicality")
PART_NAMES = {"p_network": "the network", "p_statistics": "the statistics head",
              "atypicality": "atypicality"}
#: Where each part's value is read from (``Detector.parts``): the atypicality by the distance
#: behind its percentile, which keeps ranking images beyond every real one.
PART_VALUES = {"p_network": "p_network", "p_statistics": "p_statistics",
               "atypicality": "atypicality_distance"}
_CLIP = 1e-7  # probabilities are clipped to [_CLIP, 1 - _CLIP] before their log-odds


def part_values(part: str, values: np.ndarray) -> np.ndarray:
    """A part on the scale the verdict adds up: log-odds of a probability; the log of the
    typicality distance (``atypicality_distance``) for the fake-free part."""
    v = np.asarray(values, dtype=np.float64)
    if part == "atypicality":
        return np.log(np.maximum(v, 1e-9))
    p = np.clip(v, _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def fit_monotone_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None,
                          l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Logistic regression of ``y`` (1 synthetic) on the columns of ``x`` with non-negative
    coefficients (L-BFGS-B with bounds), ``weight`` per row (each class summing to one half
    when None), a small L2 penalty so that separable data keeps finite weights."""
    from scipy.optimize import minimize

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if weight is None:
        weight = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    w = np.asarray(weight, dtype=np.float64)
    k = x.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta[:k] + theta[k]
        # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, stably
        s = np.where(y == 1, -z, z)
        nll = np.logaddexp(0, s)
        g = w * (1 / (1 + np.exp(-s))) * np.where(y == 1, -1.0, 1.0)
        grad = np.r_[x.T @ g + 2 * l2 * theta[:k], g.sum()]
        return float((w * nll).sum() + l2 * theta[:k] @ theta[:k]), grad

    bounds = [(0.0, None)] * k + [(None, None)]
    res = minimize(loss, np.r_[np.full(k, 0.1), 0.0], jac=True, method="L-BFGS-B", bounds=bounds)
    return np.maximum(res.x[:k], 0.0), float(res.x[k])


@dataclass
class Verdict:
    """The detector's one score and decision (see the module docstring)."""

    parts: tuple[str, ...]  # which of PARTS it combines (a detector without a head: two)
    centre: np.ndarray  # (k,) real images' median of each transformed part
    scale: np.ndarray  # (k,) and their spread (positive)
    weights: np.ndarray  # (m, k) non-negative: one row per logistic model, the score their max
    intercepts: np.ndarray  # (m,)
    #: Log-odds at or above which an image reads "synthetic" (set on real images only). Kept
    #: as log-odds: scores of very unlike images round to 1.0, their log-odds do not.
    cut: float

    @property
    def threshold(self) -> float:
        """The cut as a ``synthetic_score``."""
        return float(1 / (1 + np.exp(-np.clip(self.cut, -60, 60))))

    def standardised(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, k) transformed parts, centred and scaled on real images; NaN -> the real centre
        (a part that could not be measured says nothing)."""
        cols = [(part_values(p, parts[PART_VALUES[p]]) - c) / s
                for p, c, s in zip(self.parts, self.centre, self.scale, strict=True)]
        z = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        return np.where(np.isfinite(z), z, 0.0)

    def logits(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N,) the score's log-odds: the largest of the models' linear parts."""
        z = self.standardised(parts)
        return (z @ self.weights.T + self.intercepts).max(axis=1)

    def score(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """``synthetic_score`` in (0, 1), monotone non-decreasing in every part."""
        return 1 / (1 + np.exp(-np.clip(self.logits(parts), -60, 60)))

    def flagged(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.logits(parts) >= self.cut

    def explain(self, parts: Mapping[str, np.ndarray]) -> list[list[str]]:
        """Per image, the parts that flagged it (empty when it is not flagged): in the model
        that scores it highest, the fewest parts whose pull above a typical real image (the
        real centre, where every standardised part is 0) carries the log-odds over the
        threshold, largest pull first."""
        z = self.standardised(parts)
        lin = z @ self.weights.T + self.intercepts
        best = lin.argmax(axis=1)
        cut = self.cut
        out: list[list[str]] = []
        for row, m in zip(z, best, strict=True):
            pull = self.weights[m] * row
            if self.intercepts[m] + pull.sum() < cut:
                out.append([])
                continue
            order = np.argsort(-pull)
            total, names = self.intercepts[m], []
            for j in order:
                if pull[j] <= 0:
                    break
                total += pull[j]
                names.append(self.parts[j])
                if total >= cut:
                    break
            # Flagged already at a typical real image's parts (a cut below the real centre,
            # e.g. at a high false-alarm rate): the part that pushes it furthest says why.
            out.append(names or [self.parts[int(order[0])]])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"parts": list(self.parts), "centre": self.centre.tolist(),
                "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "intercepts": self.intercepts.tolist(), "cut": self.cut,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, raw: Any, path: Path | None = None) -> Verdict:
        """Checked field by field: a damaged ``detector.json`` is one clear error naming it."""
        def bad(what: str) -> DataError:
            return DataError(f"'verdict' {what}", path)

        if not isinstance(raw, dict):
            raise bad("must be an object")
        parts = raw.get("parts")
        if not (isinstance(parts, list) and parts and all(p in PARTS for p in parts)
                and len(set(parts)) == len(parts)):
            raise bad(f"'parts' must name some of {', '.join(PARTS)}, got {parts!r}")
        k = len(parts)
        arrays = {}
        for key, shape in (("centre", (k,)), ("scale", (k,)), ("intercepts", None),
                           ("weights", None)):
            try:
                a = np.asarray(raw.get(key), dtype=np.float64)
            except (TypeError, ValueError):
                raise bad(f"'{key}' must hold numbers") from None
            if not np.isfinite(a).all() or (shape is not None and a.shape != shape):
                raise bad(f"'{key}' must be {shape or 'finite numbers'}, got {raw.get(key)!r}")
            arrays[key] = a
        w, b = arrays["weights"], arrays["intercepts"]
        if w.ndim != 2 or w.shape[1] != k or b.shape != (w.shape[0],) or not len(b):
            raise bad(f"'weights' must be (models, {k}) and 'intercepts' one per model")
        if (w < 0).any() or (arrays["scale"] <= 0).any():
            raise bad("weights must be non-negative and scales positive (the score must rise "
                      "with every part)")
        cut = raw.get("cut")
        if not (isinstance(cut, int | float) and not isinstance(cut, bool) and np.isfinite(cut)):
            raise bad(f"'cut' (the threshold's log-odds) must be a finite number, got {cut!r}")
        return cls(tuple(parts), arrays["centre"], arrays["scale"], w, b, float(cut))


def real_centre_scale(parts: Sequence[str], real: Mapping[str, np.ndarray]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Median and spread (interquartile range / 1.349, at least 1e-3) of each transformed part
    over real images: the units the weights are in."""
    centre, scale = [], []
    for p in parts:
        v = part_values(p, real[PART_VALUES[p]])
        v = v[np.isfinite(v)]
        q1, q2, q3 = np.percentile(v, [25, 50, 75]) if len(v) else (0.0, 0.0, 1.0)
        centre.append(q2)
        scale.append(max((q3 - q1) / 1.349, 1e-3))
    return np.array(centre), np.array(scale)


@dataclass
class ThresholdRule:
    """The decision of detectors calibrated before :class:`Verdict` (their folders still load):
    synthetic when p(synthetic), the larger of the network's and the head's, reaches
    ``threshold``, or (the "either" rule) the atypicality reaches ``atypicality_threshold``.
    Its score is p(synthetic) itself, or under "either" the larger of p(synthetic)'s
    percentile among the real calibration images (``p_real``) and the atypicality."""

    threshold: float
    atypicality_threshold: float | None = None
    p_real: np.ndarray | None = None  # sorted p(synthetic) of the real calibration images

    @staticmethod
    def p_synthetic(parts: Mapping[str, np.ndarray]) -> np.ndarray:
        p = np.asarray(parts["p_network"], dtype=np.float64)
        head = parts.get("p_statistics")
        return p if head is None else np.fmax(p, np.asarray(head, dtype=np.float64))

    def _atypicality(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.nan_to_num(np.asarray(parts["atypicality"], dtype=np.float64), nan=-np.inf)

    def score(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        p = self.p_synthetic(parts)
        if self.atypicality_threshold is None or self.p_real is None or not len(self.p_real):
            return p
        q = np.searchsorted(self.p_real, p, side="left") / len(self.p_real)
        return np.fmax(q, np.asarray(parts["atypicality"], dtype=np.float64))  # NaN: q

    def flagged(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self.p_synthetic(parts) >= self.threshold
        if self.atypicality_threshold is not None:
            out |= self._atypicality(parts) >= self.atypicality_threshold
        return out

    def explain(self, parts: Mapping[str, np.ndarray]) -> list[list[str]]:
        """Per image, every rule that fired: the network's or the head's p(synthetic) at the
        threshold, the atypicality at its own."""
        fired = {"p_network": np.asarray(parts["p_network"], dtype=np.float64) >= self.threshold}
        if parts.get("p_statistics") is not None:
            fired["p_statistics"] = np.nan_to_num(np.asarray(parts["p_statistics"], dtype=np.float64),
                                                  nan=-np.inf) >= self.threshold
        if self.atypicality_threshold is not None:
            fired["atypicality"] = self._atypicality(parts) >= self.atypicality_threshold
        n = len(fired["p_network"])
        return [[name for name, hit in fired.items() if hit[i]] for i in range(n)]
