"""The verdict, thresholds and fake-free references of a trained detector.

After training, :func:`calibrate` scores the real validation images and the calibration reserve
(:mod:`.run_folder`), fits the typicality references and the statistics head, fits the one
verdict on those real images and the generated ones (:mod:`.verdict_fit`), and sets its
threshold at the target false-alarm rate on the real images alone. Generated images play no
part in any threshold: one set on them would move with every new generator.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxymorph.detection.detector import DETECTOR_FILE, Detector
from galaxymorph.detection.run_folder import calibration_files, reference_files
from galaxymorph.detection.scoring import (
    NEVER_FLAGS,
    expected_false_alarm,
    threshold_at_false_alarm,
)
from galaxymorph.detection.statistics import STATISTICS_FILE, noise_statistics
from galaxymorph.detection.statistics_head import STATISTICS_HEAD_FILE, StatisticsHead, p_either
from galaxymorph.detection.typicality import TYPICALITY_FILE, Typicality
from galaxymorph.detection.verdict_fit import fit_verdict
from galaxymorph.errors import DataError
from galaxymorph.io_utils import write_json

log = logging.getLogger("galaxymorph")


def clean_column(df: pd.DataFrame) -> str:
    """Undegraded copies when training was augmented (catalogs before that lack the column)."""
    return "clean" if "clean" in df.columns else "filename"


def calibrate(run_dir: Path, info: dict[str, Any], df: pd.DataFrame, folder: Path,
              split: dict[str, Any]) -> dict[str, Any]:
    """Fit the fake-free references (real training images), the statistics head (the training
    fold's real and generated images) and the decision rule: the one verdict (``--verdict
    combined``, :mod:`.verdict_fit`) or an earlier rule's thresholds, each set at the target
    false-alarm rate on real images only (the validation fold's and the calibration reserve)."""
    det = Detector.load(run_dir)
    det.head = None  # the network's p(synthetic): a head is fitted (again) below
    real, fake = df[df["label"] == 0], df[df["label"] == 1]

    def fold_files(rows: pd.DataFrame, folds: tuple[str, ...]) -> list[Path]:
        names = set().union(*(split.get(f, []) for f in folds))
        return [folder / f for f in rows.loc[rows["filename"].isin(names), clean_column(rows)]]

    p_val, f_val, s_val = image_scores(det, fold_files(real, ("val",)), "the val fold")
    _, f_train, s_train = image_scores(det, fold_files(real, ("train",)), "the train fold")
    settings = info.get("settings", {})
    kind = settings.get("atypicality", "features")
    # Real images are plentiful and the statistics need no network: with them, every other
    # reserve image joins their reference (a denser reference of real images separates the
    # real tail from generated images better), and the rest calibrate.
    info = {**info, "statistics_reference_reserve": kind in ("features+statistics", "statistics")}
    extra = reference_files(run_dir, info)
    if extra:
        s_train = np.concatenate([s_train, image_scores(det, extra, "the reference reserve",
                                                       network=False)[2]])
    cal = calibration_files(run_dir, info)
    if cal:  # the reserve of real images never trained on: many more than the val fold holds
        p_cal, f_cal, s_cal = image_scores(det, cal, "the calibration reserve")
        p_val, f_val = np.concatenate([p_val, p_cal]), np.concatenate([f_val, f_cal])
        s_val = np.concatenate([s_val, s_cal])
    fakes = fake[fake["filename"].isin(set(split.get("train", [])) | set(split.get("val", [])))]
    head, head_fit, s_fake = None, None, None
    if settings.get("statistics_head", False) or settings.get("verdict") == "combined":
        s_fake = image_scores(det, [folder / f for f in fakes[clean_column(fakes)]],
                              "the generated images", network=False)[2]
    in_train = fakes["filename"].isin(set(split.get("train", []))).to_numpy()
    if settings.get("statistics_head", False):  # detectors trained before it have none
        stats = np.concatenate([s_train, s_fake[in_train]])
        labels = np.r_[np.zeros(len(s_train)), np.ones(in_train.sum())]
        head = StatisticsHead.fit(stats, labels)
        head_fit = {"n_real": len(s_train), "n_synthetic": int(in_train.sum()),
                    "training_accuracy": float(((head.p(stats) >= 0.5) == labels).mean())}
    typicality = Typicality.fit(f_train, f_val)
    by_statistics = (Typicality.fit(s_train, s_val)
                     if kind in ("features+statistics", "statistics") else None)
    info = {**info, "typicality": TYPICALITY_FILE,
            "typicality_statistics": STATISTICS_FILE if by_statistics is not None else None,
            "statistics_reference": None if by_statistics is None else len(s_train),
            "statistics_head": STATISTICS_HEAD_FILE if head is not None else None,
            "statistics_head_fit": head_fit, "verdict_model": None, "verdict_fit": None}
    det.head, det.typicality, det.by_statistics = head, typicality, by_statistics
    if settings.get("verdict") == "combined":
        info |= _combined_rule(det, info, p_val, s_val, f_val, fold_files(fake, ("val",)),
                               (s_fake, in_train, fakes["source"].to_numpy(), s_train),
                               bool(cal))
    else:
        p_real = p_val if head is None else p_either(p_val, head.p(s_val))
        a_real = typicality.atypicality(f_val)
        if by_statistics is not None:
            a_stat = by_statistics.atypicality(s_val)
            a_real = a_stat if kind == "statistics" else np.fmax(a_real, a_stat)
        info |= _threshold_rule(settings, p_real, a_real, bool(cal))
        typicality.p_real = np.sort(p_real.astype(np.float64))
    typicality.save(run_dir / TYPICALITY_FILE)
    if head is not None:
        head.save(run_dir / STATISTICS_HEAD_FILE)
    else:
        (run_dir / STATISTICS_HEAD_FILE).unlink(missing_ok=True)
    if by_statistics is not None:
        by_statistics.save(run_dir / STATISTICS_FILE)
    else:  # a recalibration without statistics must not leave an earlier file behind
        (run_dir / STATISTICS_FILE).unlink(missing_ok=True)
    write_json(run_dir / DETECTOR_FILE, info)
    return info


def _on(reserve: bool) -> str:
    return ("real images of the validation fold and the calibration reserve (never trained on)"
            if reserve else "real images of the validation fold")


def _combined_rule(det: Detector, info: dict[str, Any], p_val: np.ndarray, s_val: np.ndarray,
                   f_val: np.ndarray, val_fakes: list[Path],
                   generated: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                   reserve: bool) -> dict[str, Any]:
    """The one verdict (:func:`~.verdict_fit.fit_verdict`): its parts on the real calibration
    images, on the validation fold's generated images as the detector scores them, and on
    every generated image held out of the statistics head family by family."""
    s_fake, in_train, sources, s_reference = generated
    head = det.head
    parts = ["p_network"] + (["p_statistics"] if head is not None else []) + ["atypicality"]

    def distance(stats: np.ndarray, feats: np.ndarray | None) -> np.ndarray:
        if det.by_statistics is not None:
            return det.by_statistics.distance(stats[:, :det.by_statistics.reference.shape[1]])
        return det.typicality.distance(feats) if feats is not None else np.full(len(stats), np.nan)

    def values(p: np.ndarray, p_head: np.ndarray | None, d: np.ndarray) -> dict[str, np.ndarray]:
        out = {"p_network": p, "atypicality_distance": d}
        if head is not None:
            out["p_statistics"] = p_head
        return out

    real = values(p_val, None if head is None else head.p(s_val), distance(s_val, f_val))
    seen = None
    if val_fakes:  # a validation fold with generated images (any but the tiniest runs)
        p_seen, f_seen, s_seen = image_scores(det, val_fakes, "the generated validation images")
        seen = values(p_seen, None if head is None else head.p(s_seen), distance(s_seen, f_seen))
    held_p = np.full(len(s_fake), np.nan)
    families = np.unique(sources)
    if head is not None:
        for family in families:  # the head without this family: what it makes of a new one
            others = in_train & (sources != family)
            if others.any():
                lofo = StatisticsHead.fit(np.concatenate([s_reference, s_fake[others]]),
                                          np.r_[np.zeros(len(s_reference)), np.ones(others.sum())])
                held_p[sources == family] = lofo.p(s_fake[sources == family])
    held = (values(np.full(len(s_fake), np.nan), held_p, distance(s_fake, None))
            if det.by_statistics is not None or head is not None else None)
    far = info.get("settings", {}).get("false_alarm", 0.01)
    verdict, record = fit_verdict(parts, real, seen, held, sources, far)
    n = len(p_val)
    rule: dict[str, Any] = {"fixed": 0.5} if far is None else {
        "false_alarm_target": far, "on": _on(reserve), "n_real": n,
        "expected_false_alarm": expected_false_alarm(n, far),
        "real_needed": math.ceil(1 / far - 1 - 1e-9) if far > 0 else None,
        "verdict": "synthetic when synthetic_score >= threshold: one score over p_network, "
                   "p_statistics and atypicality, its threshold set on real images only"}
    return {"verdict_model": verdict.to_dict(), "verdict_fit": record,
            "threshold": verdict.threshold, "atypicality_threshold": None, "threshold_rule": rule}


def _threshold_rule(settings: dict[str, Any], p_real: np.ndarray, a_real: np.ndarray,
                    reserve: bool) -> dict[str, Any]:
    """The thresholds of the earlier rules: p(synthetic) alone at the target rate, or "either"
    (p(synthetic) or atypicality, each at half the rate, so that their union keeps it)."""
    far = settings.get("false_alarm", 0.01)
    either = far is not None and settings.get("verdict", "p_synthetic") == "either"
    each = float(far) / 2 if either else far
    rule = {"false_alarm_target": far, "on": _on(reserve),
            "n_real": len(p_real)} if far is not None else {"fixed": 0.5}
    a_thr = None
    if far is not None:
        # With few real images no threshold can promise a low rate: say what it will be.
        rules = 2 if either else 1
        rule["expected_false_alarm"] = min(1.0, rules * expected_false_alarm(len(p_real), each))
        rule["real_needed"] = math.ceil(rules / far - 1 - 1e-9) if far > 0 else None
        if either:
            rule["verdict"] = ("synthetic when p_synthetic >= threshold or atypicality >= "
                               "atypicality_threshold, each at half the target rate")
            a_thr = threshold_at_false_alarm(a_real, each)
    p_thr = 0.5 if far is None else threshold_at_false_alarm(p_real, each)
    if p_thr == NEVER_FLAGS:
        log.warning("p(synthetic) is 1.0 for more real calibration images than a %.2g%% "
                    "false-alarm rate allows: it flags nothing; %s", 100 * each,
                    "the atypicality still does" if a_thr is not None else "no rule flags images")
    return {"threshold": p_thr, "atypicality_threshold": a_thr, "threshold_rule": rule}


def image_scores(det: Detector, files: list[Path], what: str, network: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's p(synthetic), its features and the noise statistics of image files (real
    ones to calibrate on; generated ones for the statistics head); with ``network=False`` the
    statistics only, the other two empty."""
    p, feats, stats = [], [], []
    for _, batch in det.prepared_batches(files):
        if network:
            p.append(det.p_network(batch))
            feats.append(det.features(batch))
        stats.append(noise_statistics(batch))
    if not stats:
        raise DataError(f"no readable images in {what} to calibrate on",
                        files[0].parent if files else None)
    if not network:
        return np.zeros(0), np.zeros((0, 0)), np.concatenate(stats)
    return np.concatenate(p), np.concatenate(feats), np.concatenate(stats)
