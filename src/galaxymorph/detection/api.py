"""Train, evaluate and apply a real-vs-synthetic detector, through the classifier's own paths.

A detector is an ordinary galaxymorph run with two classes, ``real`` and ``synthetic``: the data
is an assembled catalog (:mod:`galaxymorph.detection.assembly`), training is ``galaxymorph.train``
split by ``group`` (Lightning, early stopping, checkpoints, curves, calibration, model
artifact), and loading is ``load_classifier``. What this module adds:

RUN_DIR/
  data/detector_catalog.csv, data/images/, data/assembly.json   the assembled training data
  detector.json            sources, crops and the resampling chain every input must go through
  batch_accuracy.png       accuracy of every training batch (the seed logged it per batch)
  detector_metrics.json    test fold: accuracy, ROC AUC, precision, recall, F1 (synthetic = +)
  ... and everything ``galaxymorph train`` writes (curves.png, checkpoints/, model.safetensors)
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxymorph.detection.assembly import ASSEMBLY, CATALOG, CLASS_NAMES, assemble, read_catalog
from galaxymorph.detection.detector import DETECTOR_FILE, Detector, read_detector_info
from galaxymorph.detection.scoring import detector_metrics, plot_roc
from galaxymorph.errors import ConfigError, DataError, ImageReadError
from galaxymorph.io_utils import write_json

log = logging.getLogger("galaxymorph")

DATA_DIR = "data"


@dataclass
class DetectorRun:
    run_dir: Path
    metrics: dict[str, Any]  # detector metrics of the held-out test fold
    summary: dict[str, Any]
    catalog: Path


def train_detector(real: Sequence[str] | str, fake: Sequence[str] | str, out: str | Path, *,
                   model: str = "seed-detector", image_size: int = 64,
                   common_size: int | str | None = "auto", real_crop: float | None = None,
                   fake_crop: float = 1.0, per_source_cap: int | None = None,
                   max_per_side: int | None = None, epochs: int | None = None, patience: int = 5,
                   batch_size: int = 32, lr: float = 1e-3, seed: int = 0, pretrained: bool = False,
                   progress: bool = True, resume: bool = False, **train_options: Any) -> DetectorRun:
    """Assemble real vs ``fake`` images and train a detector on them in run folder ``out``.

    Defaults follow the seed (its CNN, Adam-family optimiser at 1e-3, up to 50 epochs, early
    stopping at patience 5) except the input size: 64 px, the GAN's native resolution, since a
    larger input only sees the same 64 px detail upsampled (see ``assemble``). Extra keyword
    arguments go to ``galaxymorph.train`` (``threads``, ``max_time_minutes``, ``scheduler``...).
    ``resume=True`` continues an interrupted run (``epochs``, if given, is the new total).
    """
    from galaxymorph.training.run import train

    run_dir = Path(out)
    if resume:
        result = train(out=run_dir, resume=True, epochs=epochs)
        return _finish(run_dir, result.summary)
    if (run_dir / "config.yaml").exists():
        raise ConfigError("run folder already holds a run; use --resume to continue it or "
                          "choose another --out", run_dir)
    data_dir = run_dir / DATA_DIR
    settings = dict(real=[real] if isinstance(real, str) else list(real),
                    fake=[fake] if isinstance(fake, str) else list(fake), image_size=image_size,
                    common_size=common_size, real_crop=real_crop, fake_crop=fake_crop,
                    per_source_cap=per_source_cap, max_per_side=max_per_side, seed=seed)
    csv = data_dir / CATALOG
    if csv.exists() and read_detector_info(run_dir).get("settings") == settings:
        log.info("reusing the data assembled earlier in %s", data_dir)
    else:
        csv = assemble(settings["real"], settings["fake"], data_dir, image_size=image_size,
                       common_size=common_size, real_crop=real_crop, fake_crop=fake_crop,
                       per_source_cap=per_source_cap, max_per_side=max_per_side, seed=seed,
                       progress=progress)
    assembly = _read_json(data_dir / ASSEMBLY)
    write_json(run_dir / DETECTOR_FILE, {
        "format": 1, "settings": settings, "catalog": f"{DATA_DIR}/{CATALOG}",
        "class_names": CLASS_NAMES, "resampling": assembly["resampling"],
        "real_crop": assembly["real_crop"], "fake_crop": assembly["fake_crop"],
        "sources": [{k: s[k] for k in ("spec", "side", "key")} for s in assembly["sources"]],
        "counts": assembly["counts"]})
    # The assembled images are already at the input size and balanced: no crop, no weights.
    options: dict[str, Any] = dict(group_by="group", crop=1.0, imbalance="none", split_seed=seed)
    options.update(train_options)
    result = train(data=f"catalog:{csv.resolve()}", out=run_dir, model=model,
                   image_size=image_size, epochs=epochs or 50, early_stopping_patience=patience,
                   batch_size=batch_size, lr=lr, seed=seed, pretrained=pretrained,
                   progress=progress, **options)
    return _finish(run_dir, result.summary)


def _finish(run_dir: Path, summary: dict[str, Any]) -> DetectorRun:
    """Batch-accuracy figure, detector metrics of the test fold, notes on the model card."""
    from galaxymorph.evaluation.plots import plot_series
    from galaxymorph.training.history import read_batch_series

    batch_acc = read_batch_series(run_dir / "logs" / "metrics.csv")
    if batch_acc:
        plot_series(batch_acc, run_dir / "batch_accuracy.png", "training accuracy per batch",
                    xlabel="step", ylabel="batch accuracy")
    info = read_detector_info(run_dir)
    csv = run_dir / info.get("catalog", f"{DATA_DIR}/{CATALOG}")
    df = read_catalog(csv)
    test = set(_read_json(run_dir / "split.json").get("test", []))
    rows = df[df["filename"].isin(test)]
    det = Detector.load(run_dir)
    p = det.score_prepared_files([csv.parent / f for f in rows["filename"]])
    ok = ~np.isnan(p)
    metrics = detector_metrics(rows["label"].to_numpy()[ok], p[ok], rows["source"].to_numpy()[ok],
                               threshold=det.threshold)
    metrics.update({"split": "test", "held_out": "test fold of the run's own split (by group)"})
    write_json(run_dir / "detector_metrics.json", metrics)
    _annotate_card(run_dir, info)
    return DetectorRun(run_dir, metrics, summary, csv)


def _annotate_card(run_dir: Path, info: dict[str, Any]) -> None:
    """Say on the model card what inputs the detector expects (the app shows card notes)."""
    from galaxymorph.models.artifact import CARD_FILE

    path = run_dir / CARD_FILE
    card = _read_json(path)
    if not card:
        return
    res = info.get("resampling", {})
    card["description"] = "real-vs-synthetic galaxy image detector (classes: real, synthetic)"
    note = (f"inputs are centre-cropped, resized to {res.get('common_size') or res.get('image_size')} "
            f"px then to {res.get('image_size')} px; real images were cropped to "
            f"{info.get('real_crop')} of their side in training (frame inputs alike)")
    card["notes"] = [n for n in card.get("notes", []) if not n.startswith("inputs are")] + [note]
    write_json(path, card)


# -- evaluation -------------------------------------------------------------------------------


def training_groups(run_dir: str | Path) -> set[str]:
    """Groups of the images a detector trained or early-stopped on (train and val folds)."""
    run_dir = Path(run_dir)
    info = read_detector_info(run_dir)
    split = _read_json(run_dir / "split.json")
    if not info or not split:
        return set()
    df = read_catalog(run_dir / info["catalog"])
    seen = set(split.get("train", [])) | set(split.get("val", []))
    return set(df.loc[df["filename"].isin(seen), "group"].astype(str))


def evaluate_detector(run_dir: str | Path, real: Sequence[str] | str, fake: Sequence[str] | str,
                      out: str | Path, *, real_crop: float | None = None,
                      fake_crop: float | None = None, per_source_cap: int | None = None,
                      max_per_side: int | None = None, balance: bool = True,
                      exclude_training: bool = True, seed: int = 0, device: str = "cpu",
                      progress: bool = True) -> dict[str, Any]:
    """Score a detector on real and generated images; write ``metrics.json`` and figures.

    Images go through the detector's own resampling chain. With ``exclude_training`` (the
    default) every image whose group the detector trained or validated on is left out, so
    evaluating on the training sources measures held-out images only; ``metrics.json`` says
    how many were excluded and whether each source's generator was seen in training.
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
                   exclude_groups=exclude, seed=seed, progress=progress)
    assembly = _read_json(data_dir / ASSEMBLY)
    df = read_catalog(csv)
    p = det.score_prepared_files([data_dir / f for f in df["filename"]])
    ok = ~np.isnan(p)
    y = df["label"].to_numpy()
    metrics = detector_metrics(y[ok], p[ok], df["source"].to_numpy()[ok], threshold=det.threshold)
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
    })
    write_json(out / "metrics.json", metrics)
    pd.DataFrame({"filename": df["filename"], "origin": df["origin"], "source": df["source"],
                  "label": df["label_name"], "p_synthetic": p}).to_csv(out / "predictions.csv",
                                                                        index=False)
    plot_confusion_matrix(metrics["confusion_matrix"], CLASS_NAMES, out / "confusion_matrix.png",
                          title=f"accuracy {metrics['accuracy']:.4f}, n {metrics['n']}")
    plot_roc(y[ok], p[ok], out / "roc.png", title=f"{run_dir.name}: real vs synthetic")
    return metrics


# -- prediction -------------------------------------------------------------------------------


def predict_detector(run_dir: str | Path, images: Sequence[str | Path], *,
                     crop: float | None = None, device: str = "cpu",
                     batch_size: int = 64) -> list[dict[str, Any]]:
    """p(synthetic) per image file (folders are expanded to their image files).

    A file that cannot be read gives ``{"path", "p_synthetic": None, "error": message}``
    instead of stopping the others. Inputs are framed like the detector's real training
    images (``real_crop`` of ``detector.json``, as ``predict --detector`` and the app do);
    ``crop`` overrides that framing.
    """
    from dataclasses import replace

    import torch

    from galaxymorph.data.imageio import is_image_path, read_image

    det = Detector.load(run_dir, device=device)
    if crop is not None:
        det.view = replace(det.view, crop=float(crop))
    paths: list[Path] = []
    for item in images:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_path(f))
            paths += files or [p]  # an empty folder is reported, not silently skipped
        else:
            paths.append(p)
    results: list[dict[str, Any]] = []
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if pending:
            probs = det.p_synthetic(torch.stack([t for _, t in pending]))
            for (k, _), q in zip(pending, probs, strict=True):
                results[k].update(p_synthetic=float(q), label=det.label(float(q)))
            pending.clear()

    for path in paths:
        results.append({"path": str(path), "p_synthetic": None, "label": None, "error": None})
        try:
            if path.is_dir():
                raise ImageReadError("folder holds no image files", path)
            pending.append((len(results) - 1, det.view(read_image(path))))
        except ImageReadError as exc:
            results[-1]["error"] = str(exc)
        if len(pending) >= batch_size:
            flush()
    flush()
    return results


# -- helpers ----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"not readable JSON ({exc})", path) from exc
    return raw if isinstance(raw, dict) else {}
