"""A detector's run folder: where its data, reserve and thresholds' images are.

A detector is an ordinary galaxymorph run with two classes, ``real`` and ``synthetic``:

RUN_DIR/
  data/detector_catalog.csv, data/images/, data/assembly.json   the assembled training data
  data/calibration.csv, data/calibration/   the reserve of real images never trained on
  detector.json            sources, crops, the resampling chain every input must go through,
                           thresholds and what they were set on
  typicality.npz, typicality_statistics.npz, statistics_head.npz   the fake-free references
                           and the statistics head (plain arrays)
  batch_accuracy.png       accuracy of every training batch (the seed logged it per batch)
  detector_metrics.json    test fold: accuracy, ROC AUC, precision, recall, F1 (synthetic = +)
  ... and everything ``galaxymorph train`` writes (curves.png, checkpoints/, model.safetensors)

This module says which of those images are which, for calibration (:mod:`.calibration`) and for
evaluation, which must never reuse them as fresh images (:mod:`.evaluate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaxymorph.detection.assembly import CALIBRATION_CATALOG, CATALOG, read_catalog
from galaxymorph.detection.detector import read_detector_info
from galaxymorph.io_utils import read_json_object

DATA_DIR = "data"


def training_groups(run_dir: str | Path) -> set[str]:
    """Groups of the images a detector trained or early-stopped on (train and val folds)."""
    run_dir = Path(run_dir)
    info = read_detector_info(run_dir)
    split = read_json_object(run_dir / "split.json")
    if not info or not split:
        return set()
    df = read_catalog(run_dir / info["catalog"])
    seen = set(split.get("train", [])) | set(split.get("val", []))
    groups = set(df.loc[df["filename"].isin(seen), "group"].astype(str))
    cal = Path(run_dir / info["catalog"]).parent / CALIBRATION_CATALOG
    if cal.is_file():  # the thresholds were set on these: not fresh images either
        groups |= set(read_catalog(cal)["group"].astype(str))
    return groups


def _reserve_files(run_dir: Path, info: dict[str, Any]) -> list[Path]:
    """The run's whole reserve of real images (``assemble(calibration_real=)``), if any."""
    folder = (run_dir / info.get("catalog", f"{DATA_DIR}/{CATALOG}")).parent
    cal = folder / CALIBRATION_CATALOG
    if not cal.is_file():
        return []
    df = read_catalog(cal)
    return [folder / f for f in df.loc[df["label"] == 0, "filename"]]


def _splits_reserve(info: dict[str, Any]) -> bool:
    """Whether the reserve is shared between the statistics' reference and the calibration
    (detectors calibrated since the noise statistics' reference grew; earlier ones calibrate
    on all of it)."""
    return bool(info.get("statistics_reference_reserve"))


def calibration_files(run_dir: Path, info: dict[str, Any]) -> list[Path]:
    """The reserve's real images the thresholds are set on (with the validation fold's)."""
    files = _reserve_files(run_dir, info)
    return files[1::2] if _splits_reserve(info) and len(files) >= 2 else files


def reference_files(run_dir: Path, info: dict[str, Any]) -> list[Path]:
    """The reserve's real images that join the training images in the noise statistics'
    reference (every other one; none for detectors that calibrate on the whole reserve)."""
    files = _reserve_files(run_dir, info)
    return files[0::2] if _splits_reserve(info) and len(files) >= 2 else []
