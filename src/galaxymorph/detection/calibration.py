"""Thresholds and fake-free references of a trained detector, set on real images only.

After training, :func:`calibrate` scores the real validation images and the calibration reserve
(:mod:`.run_folder`), fits the typicality references and the statistics head, and sets each
decision threshold at the target false-alarm rate on those real images. Generated images play
no part in any threshold: one set on them would move with every new generator.
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
from galaxymorph.errors import DataError
from galaxymorph.io_utils import write_json

log = logging.getLogger("galaxymorph")


def clean_column(df: pd.DataFrame) -> str:
    """Undegraded copies when training was augmented (catalogs before that lack the column)."""
    return "clean" if "clean" in df.columns else "filename"


def calibrate(run_dir: Path, info: dict[str, Any], df: pd.DataFrame, folder: Path,
              split: dict[str, Any]) -> dict[str, Any]:
    """Threshold at the target false-alarm rate on the real validation images, and the
    typicality reference (real training images) and calibration (real validation images).
    Generated images play no part in either."""
    det = Detector.load(run_dir)
    det.head = None  # the network's p(synthetic): a head is fitted (again) below
    real = df[df["label"] == 0]

    def fold_files(rows: pd.DataFrame, fold: str) -> list[Path]:
        return [folder / f for f in rows.loc[rows["filename"].isin(set(split.get(fold, []))),
                                             clean_column(rows)]]

    def fold_features(fold: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return image_scores(det, fold_files(real, fold), f"the {fold} fold")

    p_val, f_val, s_val = fold_features("val")
    _, f_train, s_train = fold_features("train")
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
    head, head_fit = None, None
    if settings.get("statistics_head", False):  # detectors trained before it have none
        fake_files = fold_files(df[df["label"] == 1], "train")
        s_fake = image_scores(det, fake_files, "the generated training images", network=False)[2]
        stats = np.concatenate([s_train, s_fake])
        labels = np.r_[np.zeros(len(s_train)), np.ones(len(s_fake))]
        head = StatisticsHead.fit(stats, labels)
        head_fit = {"n_real": len(s_train), "n_synthetic": len(s_fake),
                    "training_accuracy": float(((head.p(stats) >= 0.5) == labels).mean())}
        p_val = p_either(p_val, head.p(s_val))  # the detector's p(synthetic) from here on
    far = settings.get("false_alarm", 0.01)
    typicality = Typicality.fit(f_train, f_val)
    # The fake-free score is the larger of two percentiles: distance in the network's features
    # and in the images' noise statistics; its threshold is set on that larger value.
    # ("statistics": the noise statistics' percentile alone; the features' reference is still
    # kept, for p(synthetic)'s percentile and for reports.)
    a_val = typicality.atypicality(f_val)
    by_statistics = None
    if kind in ("features+statistics", "statistics"):
        by_statistics = Typicality.fit(s_train, s_val)
        a_stat = by_statistics.atypicality(s_val)
        a_val = a_stat if kind == "statistics" else np.fmax(a_val, a_stat)
    # "either": two rules, each at half the rate on real images, so that their union keeps it.
    either = far is not None and settings.get("verdict", "p_synthetic") == "either"
    each = float(far) / 2 if either else far
    on = ("real images of the validation fold and the calibration reserve (never trained on)"
          if cal else "real images of the validation fold")
    rule = {"false_alarm_target": far, "on": on,
            "n_real": len(p_val)} if far is not None else {"fixed": 0.5}
    a_thr = None
    if far is not None:
        # With few real images no threshold can promise a low rate: say what it will be.
        rules = 2 if either else 1
        rule["expected_false_alarm"] = min(1.0, rules * expected_false_alarm(len(p_val), each))
        rule["real_needed"] = math.ceil(rules / far - 1 - 1e-9) if far > 0 else None
        if either:
            rule["verdict"] = ("synthetic when p_synthetic >= threshold or atypicality >= "
                               "atypicality_threshold, each at half the target rate")
            a_thr = threshold_at_false_alarm(a_val, each)
    p_thr = 0.5 if far is None else threshold_at_false_alarm(p_val, each)
    if p_thr == NEVER_FLAGS:
        log.warning("p(synthetic) is 1.0 for more real calibration images than a %.2g%% "
                    "false-alarm rate allows: it flags nothing; %s", 100 * each,
                    "the atypicality still does" if a_thr is not None else "no rule flags images")
    info = {**info, "threshold": p_thr,
            "atypicality_threshold": a_thr, "threshold_rule": rule, "typicality": TYPICALITY_FILE,
            "typicality_statistics": STATISTICS_FILE if by_statistics is not None else None,
            "statistics_reference": None if by_statistics is None else len(s_train),
            "statistics_head": STATISTICS_HEAD_FILE if head is not None else None,
            "statistics_head_fit": head_fit}
    typicality.p_real = np.sort(p_val.astype(np.float64))
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
