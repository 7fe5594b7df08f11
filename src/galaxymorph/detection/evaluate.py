"""Score a trained detector on real and generated images it never trained on.

Images go through the detector's own resampling chain (:func:`~galaxymorph.detection.assemble`)
and its own verdict; ``metrics.json`` reports each source, and notes what looks wrong about the
real side (another survey's images, screened non-galaxies).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxymorph.detection.assembly import ASSEMBLY, CLASS_NAMES, assemble, read_catalog
from galaxymorph.detection.detector import SCORE_COLUMNS, Detector
from galaxymorph.detection.run_folder import DATA_DIR, training_groups
from galaxymorph.detection.scoring import detector_metrics, plot_roc
from galaxymorph.io_utils import read_json_object, write_json


def evaluate_detector(run_dir: str | Path, real: Sequence[str] | str, fake: Sequence[str] | str,
                      out: str | Path, *, real_crop: float | None = None,
                      fake_crop: float | None = None, per_source_cap: int | None = None,
                      max_per_side: int | None = None, balance: bool = True,
                      exclude_training: bool = True, seed: int = 0, device: str = "cpu",
                      screen_real: bool | None = None, progress: bool = True) -> dict[str, Any]:
    """Score a detector on real and generated images; write ``metrics.json`` and figures.

    Images go through the detector's own resampling chain. With ``exclude_training`` (the
    default) every image whose group the detector trained or validated on is left out, so
    evaluating on the training sources measures held-out images only; ``metrics.json`` says
    how many were excluded and whether each source's generator was seen in training.
    ``screen_real`` (None: as the detector was trained) leaves real images that are no galaxy
    cutouts out, as :func:`train_detector` does; how many is in ``metrics.json`` and a note.
    """
    from galaxymorph.evaluation.plots import plot_confusion_matrix
    run_dir, out = Path(run_dir), Path(out)
    det = Detector.load(run_dir, device=device)
    info, res = det.info, det.view
    exclude = training_groups(run_dir) if exclude_training else set()
    data_dir = out / DATA_DIR
    if (data_dir / ASSEMBLY).exists():
        shutil.rmtree(data_dir)  # our own earlier evaluation data: re-assemble afresh
    csv = assemble(real, fake, data_dir, image_size=res.image_size,
                   common_size=res.common_size, balance=balance,
                   real_crop=info.get("real_crop", 1.0) if real_crop is None else real_crop,
                   fake_crop=info.get("fake_crop", 1.0) if fake_crop is None else fake_crop,
                   per_source_cap=per_source_cap, max_per_side=max_per_side,
                   exclude_groups=exclude, seed=seed, progress=progress,
                   screen_real=bool(info.get("settings", {}).get("screen_real", False))
                   if screen_real is None else screen_real)
    assembly = read_json_object(data_dir / ASSEMBLY)
    df = read_catalog(csv)
    scores, metrics = score_catalog(det, [data_dir / f for f in df["filename"]], df)
    ok = scores["readable"]
    trained_keys = {s["key"] for s in info.get("sources", [])}
    excluded = sum(s["excluded_seen_groups"] for s in assembly["sources"])
    for s in assembly["sources"]:
        if s["spec"] in metrics.get("per_source", {}):
            metrics["per_source"][s["spec"]]["seen_in_training"] = s["key"] in trained_keys
    metrics.update({
        "detector": str(run_dir),
        "excluded_training_images": int(excluded),
        "held_out": ("images of groups in the detector's train/val folds were excluded"
                     if exclude_training and info else
                     "not checked: the given specs are taken to be held out"),
        "resampling": res.to_dict(),
        "unscorable": int((~ok).sum()),
        "screened_real": int(assembly.get("screened_real", 0)),
        "screened_real_examples": assembly.get("screened_real_examples", []),
        "notes": unlike_real_notes(metrics, info.get("settings", {}).get("false_alarm"))
        + screened_note(int(assembly.get("screened_real", 0))),
    })
    write_json(out / "metrics.json", metrics)
    pd.DataFrame({"filename": df["filename"], "origin": df["origin"], "source": df["source"],
                  "label": df["label_name"], **{c: scores[c] for c in SCORE_COLUMNS}}
                 ).to_csv(out / "predictions.csv", index=False)
    plot_confusion_matrix(metrics["confusion_matrix"], CLASS_NAMES, out / "confusion_matrix.png",
                          title=f"accuracy {metrics['accuracy']:.4f}, n {metrics['n']}")
    plot_roc(df["label"].to_numpy()[ok], scores["synthetic_score"][ok], out / "roc.png",
             title=f"{run_dir.name}: real vs synthetic")
    return metrics


def score_catalog(det: Detector, files: list[Path], df: pd.DataFrame
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Score an assembled catalog's images (``df``'s rows, ``files`` their paths) and its
    metrics at the detector's own verdict (the unreadable images left out)."""
    scores = det.score_prepared_files(files)
    ok = scores["readable"]
    metrics = detector_metrics(
        df["label"].to_numpy()[ok], scores["synthetic_score"][ok],
        scores["verdict"][ok] == "synthetic", df["source"].to_numpy()[ok], det.threshold,
        parts={k: scores[k][ok] for k in ("p_network", "p_statistics", "atypicality")},
        flagged_by=scores["flagged_by"][ok])
    return scores, metrics


def unlike_real_notes(metrics: dict[str, Any], false_alarm: float | None) -> list[str]:
    """A note for each real source the detector flags far more often than its false-alarm
    target: its real images are unlike the detector's real training images, most often
    because they come from another survey or processing (the noise statistics know one)."""
    target = 0.01 if false_alarm is None else float(false_alarm)
    notes = []
    for name, row in (metrics.get("per_source") or {}).items():
        rate = row.get("false_alarm_rate")
        if row.get("label") == "real" and rate is not None and row["n"] >= 20 \
                and rate >= max(0.1, 10 * target):
            notes.append(f"{rate:.0%} of the real images of {name} are flagged synthetic (target "
                         f"{target:.1%}): they are unlike the detector's real training images. If "
                         "they come from another survey or processing, train a detector on that "
                         "survey's real images (--real).")
    return notes


def screened_note(n: int) -> list[str]:
    """Say that real images were left out by the screen (none: no note)."""
    if not n:
        return []
    return [f"{n} real image(s) were left out as no galaxy cutouts (blank, or nothing at the "
            "centre; listed in screened_real_examples); --no-screen-real keeps them."]
