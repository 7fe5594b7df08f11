"""Fit a detector's one verdict (:class:`~.verdict.Verdict`) on its own images.

Three kinds of images go in, each with its parts (``p_network``, ``p_statistics``,
``atypicality_distance``, as :meth:`~.detector.Detector.parts` gives them):

* **real**: the validation fold's real images and the calibration reserve, never trained on.
  They set the parts' units (median and spread) and, alone, the threshold;
* **seen**: the generated images of the validation fold, as the detector scores them. The
  network knows their families, so a model fitted on them leans on it;
* **held out**: the generated training and validation images of each family, with the
  statistics head refitted *without that family* and no network part: what the fake-free
  parts make of a generator the detector never saw (leave-one-family-out folds, fitted
  cheaply on the sixteen statistics; the network cannot be refitted per family).

The score is the larger of the two logistic models (non-negative weights both), so a fake the
network knows is scored by the first and a fake only the fake-free parts catch by the second,
without either diluting the other; its threshold is then set on the real images only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from galaxymorph.detection.scoring import threshold_at_false_alarm
from galaxymorph.detection.verdict import (
    Verdict,
    fit_monotone_logistic,
    real_centre_scale,
)

Parts = Mapping[str, np.ndarray]


def _matrix(parts: Sequence[str], values: Parts, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return Verdict(tuple(parts), centre, scale, np.zeros((1, len(parts))), np.zeros(1),
                   0.0).standardised(values)


def fit_verdict(parts: Sequence[str], real: Parts, seen: Parts | None, held_out: Parts | None,
                held_out_family: np.ndarray | None, false_alarm: float | None
                ) -> tuple[Verdict, dict[str, Any]]:
    """The verdict over ``parts`` (names of :data:`~.verdict.PARTS`), and a record of what it was fitted on. ``held_out_family`` names each held-out
    image's family, so that every family weighs the same. ``false_alarm`` None: the cut at
    log-odds 0 (the plain 0.5 of detectors without a target rate)."""
    parts = tuple(parts)
    centre, scale = real_centre_scale(parts, real)
    z_real = _matrix(parts, real, centre, scale)
    rows, intercepts, record = [], [], {"n_real": len(z_real)}

    def fit(z_fake: np.ndarray, fake_weight: np.ndarray, columns: list[int]) -> None:
        x = np.r_[z_real[:, columns], z_fake[:, columns]]
        y = np.r_[np.zeros(len(z_real)), np.ones(len(z_fake))]
        w = np.r_[np.full(len(z_real), 0.5 / len(z_real)), 0.5 * fake_weight / fake_weight.sum()]
        coef, b = fit_monotone_logistic(x, y, w)
        full = np.zeros(len(parts))
        full[columns] = coef
        rows.append(full)
        intercepts.append(b)

    if seen is not None and len(next(iter(seen.values()))):
        z = _matrix(parts, seen, centre, scale)
        fit(z, np.ones(len(z)), list(range(len(parts))))
        record["n_seen"] = len(z)
    free = [j for j, p in enumerate(parts) if p != "p_network"]
    if held_out is not None and free and len(next(iter(held_out.values()))):
        z = _matrix(parts, held_out, centre, scale)
        fams = np.asarray(held_out_family if held_out_family is not None else np.zeros(len(z)))
        names, counts = np.unique(fams, return_inverse=False, return_counts=True)
        per = dict(zip(names.tolist(), counts.tolist(), strict=True))
        fit(z, np.array([1.0 / per[f] for f in fams.tolist()]), free)
        record["n_held_out"] = len(z)
        record["held_out_families"] = len(names)
    if not rows:
        raise ValueError("the verdict needs generated images, seen or held out")
    verdict = Verdict(parts, centre, scale, np.array(rows), np.array(intercepts), 0.0)
    verdict.cut = 0.0 if false_alarm is None else threshold_at_false_alarm(
        verdict.logits(real), false_alarm)  # any real-valued score: here the log-odds
    return verdict, record
