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

import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxymorph.detection.assembly import (
    ASSEMBLY,
    CALIBRATION_CATALOG,
    CATALOG,
    CLASS_NAMES,
    assemble,
    read_catalog,
    suggested_real_crop,
)
from galaxymorph.detection.augment import Compression, Degradation
from galaxymorph.detection.detector import DETECTOR_FILE, Detector, read_detector_info
from galaxymorph.detection.generators import choose_families, family_specs
from galaxymorph.detection.scoring import (
    NEVER_FLAGS,
    VERDICTS,
    detector_metrics,
    expected_false_alarm,
    plot_roc,
    threshold_at_false_alarm,
)
from galaxymorph.detection.statistics import STATISTICS_FILE, noise_statistics
from galaxymorph.detection.statistics_head import STATISTICS_HEAD_FILE, StatisticsHead, p_either
from galaxymorph.detection.typicality import TYPICALITY_FILE, Typicality
from galaxymorph.errors import ConfigError, DataError, ImageReadError
from galaxymorph.io_utils import read_json_object, write_json
from galaxymorph.models.views import check_view

log = logging.getLogger("galaxymorph")

DATA_DIR = "data"
#: ``train_detector(atypicality=)``: the spaces the fake-free score measures distances in.
ATYPICALITY_KINDS = ("features", "features+statistics", "statistics")


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
                   auto_fakes: Sequence[str] | str = "auto", augment: bool = False,
                   compress_fakes: float = 0.0, screen_real: bool = True,
                   false_alarm: float | None = 0.01,
                   verdict: str = "either",
                   calibration_real: int = 4000, atypicality: str = "statistics",
                   statistics_head: bool = True, view: str = "pixels",
                   backbone: str | None = None, progress: bool = True, resume: bool = False,
                   **train_options: Any) -> DetectorRun:
    """Assemble real vs ``fake`` images and train a detector on them in run folder ``out``.

    Made to hold up on generators it never saw: with ``auto_fakes="auto"`` and one ``fake``
    spec, the project's own generator families (``generators.AUTO_FAMILIES``: the
    renderer and an eigengalaxy sampler) join the synthetic side (a list names families
    explicitly, ``gan:RUN`` included; ``[]`` adds none); ``augment`` blurs, JPEG-compresses
    and resamples both classes alike (off by default: in the leave-one-generator-out benchmark it
    cost the held-out GAN 0.9975 -> 0.745 accuracy, and bought no robustness to JPEG or blurred
    fakes, docs/detector.md); ``compress_fakes`` JPEG-compresses that share of the generated
    images before resampling (quality 50-95; :class:`~galaxymorph.detection.augment.Compression`),
    so a fake saved as JPEG is still a fake; ``screen_real`` leaves real images that are not
    galaxy cutouts (blank, nothing at the centre: a cutout service's error page) out of the
    real side, in training and in :func:`evaluate_detector` alike; the decision threshold is set on the *real* validation
    images at a ``false_alarm`` rate (``None``: the plain 0.5), and a fake-free typicality reference is built
    from the real training images (``typicality.npz``). ``verdict``: ``"either"`` (default)
    calls an image synthetic when p(synthetic) *or* its atypicality passes its threshold, each
    set on the real validation images at half the ``false_alarm`` rate (so the two together
    keep it), so that a generator the network never learnt but that looks unlike real
    galaxies is still flagged; ``"p_synthetic"``: p(synthetic) alone at the whole rate. The
    thresholds are set on the real validation images plus up to ``calibration_real`` other real
    images kept out of training (``assemble``'s calibration reserve; 0: the validation fold
    alone; with the noise statistics, every other reserve image joins the statistics'
    reference instead). ``atypicality``: what the fake-free score measures the distance to real galaxies in:
    ``"features"`` (the network's penultimate layer), ``"features+statistics"`` (also sixteen
    noise statistics of the images, :mod:`.statistics`; the larger of the two percentiles) or
    ``"statistics"`` (the noise statistics' percentile alone: one tail on real images, not two).
    ``statistics_head``: also fit a logistic regression on the noise statistics of the training
    fold's real and generated images (:mod:`.statistics_head`); p(synthetic) is then the
    larger of the network's and the head's, so a generator the detector saw is caught even when the
    network learnt only another one.
    ``view`` is what the network sees:
    ``pixels``, ``frequency`` (whitened log spectrum, where upsampling artefacts show as
    peaks) or ``both`` (:mod:`galaxymorph.models.views`; inside the network, so every
    command that loads the detector applies it alike). ``backbone`` trains a light head on
    frozen pretrained features instead (:func:`backbone_options`): ``"imagenet"`` (``model``'s
    local ImageNet weights), ``"default"`` (the built-in morphology model) or a galaxymorph
    model folder.

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
    if false_alarm is not None and not 0 <= false_alarm < 1:
        raise ConfigError(f"false_alarm must be in [0, 1), got {false_alarm}")
    if not 0 <= compress_fakes <= 1:
        raise ConfigError(f"compress_fakes is a share of the generated images, in [0, 1]; "
                          f"got {compress_fakes}")
    if atypicality not in ATYPICALITY_KINDS:
        raise ConfigError(f"unknown atypicality '{atypicality}'; use one of "
                          f"{', '.join(ATYPICALITY_KINDS)}")
    if calibration_real < 0:
        raise ConfigError(f"calibration_real must be 0 or more, got {calibration_real}")
    if verdict not in VERDICTS:
        raise ConfigError(f"unknown verdict '{verdict}'; use one of {', '.join(VERDICTS)}")
    check_view(view)
    frozen = backbone_options(backbone, model, view, pretrained)  # before any image is read
    data_dir = run_dir / DATA_DIR
    reals = [real] if isinstance(real, str) else list(real)
    fakes = [fake] if isinstance(fake, str) else list(fake)
    families = choose_families(fakes, auto_fakes)
    settings = dict(real=reals, fake=fakes, families=families, image_size=image_size,
                    common_size=common_size, real_crop=real_crop, fake_crop=fake_crop,
                    per_source_cap=per_source_cap, max_per_side=max_per_side, seed=seed,
                    augment=augment, compress_fakes=compress_fakes, screen_real=screen_real,
                    false_alarm=false_alarm,
                    verdict=verdict, calibration_real=calibration_real, atypicality=atypicality, view=view,
                    backbone=backbone, statistics_head=statistics_head)
    csv = data_dir / CATALOG
    if csv.exists() and read_detector_info(run_dir).get("settings") == settings:
        log.info("reusing the data assembled earlier in %s", data_dir)
    else:
        if csv.exists():
            shutil.rmtree(data_dir)  # assembled for other settings by an earlier attempt
        crop = real_crop if real_crop is not None else suggested_real_crop(fakes) or 1.0
        made = family_specs(families, run_dir / "generated", real_spec=reals[0],
                            n=max_per_side or per_source_cap or 1000, size=max(image_size, 64),
                            real_crop=crop, seed=seed)
        csv = assemble(reals, fakes + list(made.values()), data_dir, image_size=image_size,
                       common_size=common_size, real_crop=real_crop, fake_crop=fake_crop,
                       per_source_cap=per_source_cap, max_per_side=max_per_side, seed=seed,
                       augment=Degradation() if augment else None,
                       compress_fakes=Compression(compress_fakes) if compress_fakes else None,
                       screen_real=screen_real, calibration_real=calibration_real if false_alarm is not None else 0,
                       progress=progress)
    assembly = read_json_object(data_dir / ASSEMBLY)
    write_json(run_dir / DETECTOR_FILE, {
        "format": 1, "settings": settings, "catalog": f"{DATA_DIR}/{CATALOG}",
        "class_names": CLASS_NAMES, "resampling": assembly["resampling"],
        "real_crop": assembly["real_crop"], "fake_crop": assembly["fake_crop"],
        "sources": [{k: s[k] for k in ("spec", "side", "key")} for s in assembly["sources"]],
        "counts": assembly["counts"], "augment": assembly.get("augment"), "view": view,
        "backbone": backbone, "threshold": 0.5})
    # The assembled images are already at the input size and balanced: no crop, no weights.
    # No temperature scaling: the validation fold is nearly separable, so the fitted temperature
    # runs to its lower bound (0.08-0.1 in docs/detector.md's runs) and p(synthetic) saturates at
    # 1.0 for real and generated images alike, erasing the ranking the real-image threshold
    # is set on. Thresholds, not a temperature, turn the scores into decisions.
    options: dict[str, Any] = dict(group_by="group", crop=1.0, imbalance="none", split_seed=seed,
                                   model=model, pretrained=pretrained, calibrate=False)
    options.update(frozen)
    options.update(train_options)
    result = train(data=f"catalog:{csv.resolve()}", out=run_dir, image_size=image_size,
                   epochs=epochs or 50, early_stopping_patience=patience, batch_size=batch_size,
                   lr=lr, seed=seed, view=view, progress=progress, **options)
    return _finish(run_dir, result.summary)


#: the architecture ``backbone="imagenet"`` uses when ``model`` is the from-scratch default (the
#: built-in morphology model's, so both kinds of pretrained features are comparable)
IMAGENET_BACKBONE = "mobilenetv2"


def backbone_options(backbone: str | None, model: str, view: str = "pixels",
                     pretrained: bool = False) -> dict[str, Any]:
    """``galaxymorph.train`` options that freeze a pretrained network and train its logits
    layer only (the ``linear-probe`` transfer policy; frozen BatchNorm statistics stay fixed).

    ``None``: none (``model`` from scratch, or fully fine-tuned with ``pretrained``).
    ``"imagenet"``: ``model``'s ImageNet weights from galaxymorph's local weight lookup
    (``mobilenetv2`` when ``model`` is ``seed-detector``, which has none). ``"default"`` or a
    model folder: that galaxymorph classifier's backbone (its architecture, input
    normalisation and view), a new two-class head.
    """
    from galaxymorph.models.registry import get_model_info

    if backbone is None:
        return {}
    if pretrained:
        raise ConfigError("--pretrained fine-tunes the whole network; --backbone freezes it "
                          "and trains a head: choose one")
    if backbone == "imagenet":
        arch = IMAGENET_BACKBONE if model == "seed-detector" else model
        if not get_model_info(arch).pretrained_ok:
            raise ConfigError(f"model {arch!r} has no ImageNet weights to freeze")
        return {"model": arch, "pretrained": True, "transfer": "linear-probe"}
    from galaxymorph.models.parent import parent_card

    if view != "pixels":
        raise ConfigError(f"a galaxymorph backbone keeps its own input view; --view {view} "
                          "needs a new network (from scratch or --backbone imagenet)")
    _, card = parent_card(backbone)  # one clear error for a missing or wrong folder
    return {"model": card.architecture, "init_from": backbone, "transfer": "linear-probe"}


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
    split = read_json_object(run_dir / "split.json")
    info = _calibrate(run_dir, info, df, csv.parent, split)
    rows = df[df["filename"].isin(set(split.get("test", [])))]
    det = Detector.load(run_dir)
    p, atyp = det.score_prepared_files([csv.parent / f for f in rows[_clean_column(rows)]])
    ok = ~np.isnan(p)
    metrics = detector_metrics(rows["label"].to_numpy()[ok], p[ok], rows["source"].to_numpy()[ok],
                               **_rule_scores(det, p[ok], atyp[ok]))
    metrics.update({"split": "test", "held_out": "test fold of the run's own split (by group), "
                    "undegraded images"})
    write_json(run_dir / "detector_metrics.json", metrics)
    _annotate_card(run_dir, info)
    return DetectorRun(run_dir, metrics, summary, csv)


def _rule_scores(det: Detector, p: np.ndarray, atyp: np.ndarray) -> dict[str, Any]:
    """``detector_metrics``'s keywords for ``det``'s decision rule and its ranking score."""
    if det.typicality is None:
        return {"threshold": det.threshold}
    combined = det.synthetic_score(p, atyp) if det.atypicality_threshold is not None else None
    return {"threshold": det.threshold, "atypicality": atyp,
            "atypicality_threshold": det.atypicality_threshold, "combined": combined}


def _clean_column(df: pd.DataFrame) -> str:
    """Undegraded copies when training was augmented (catalogs before that lack the column)."""
    return "clean" if "clean" in df.columns else "filename"


def _calibrate(run_dir: Path, info: dict[str, Any], df: pd.DataFrame, folder: Path,
               split: dict[str, Any]) -> dict[str, Any]:
    """Threshold at the target false-alarm rate on the real validation images, and the
    typicality reference (real training images) and calibration (real validation images).
    Generated images play no part in either."""
    det = Detector.load(run_dir)
    det.head = None  # the network's p(synthetic): a head is fitted (again) below
    real = df[df["label"] == 0]

    def fold_files(rows: pd.DataFrame, fold: str) -> list[Path]:
        return [folder / f for f in rows.loc[rows["filename"].isin(set(split.get(fold, []))),
                                             _clean_column(rows)]]

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


def _annotate_card(run_dir: Path, info: dict[str, Any]) -> None:
    """Say on the model card what inputs the detector expects (the app shows card notes)."""
    from galaxymorph.models.artifact import CARD_FILE

    path = run_dir / CARD_FILE
    card = read_json_object(path)
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
    p, atyp = det.score_prepared_files([data_dir / f for f in df["filename"]])
    ok = ~np.isnan(p)
    y = df["label"].to_numpy()
    metrics = detector_metrics(y[ok], p[ok], df["source"].to_numpy()[ok],
                               **_rule_scores(det, p[ok], atyp[ok]))
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
                  "label": df["label_name"], "p_synthetic": p,
                  "predicted": [det.label(q, a) if q == q else "" for q, a in zip(p, atyp, strict=True)],
                  "atypicality": atyp, "synthetic_score": det.synthetic_score(p, atyp)}
                 ).to_csv(out / "predictions.csv", index=False)
    plot_confusion_matrix(metrics["confusion_matrix"], CLASS_NAMES, out / "confusion_matrix.png",
                          title=f"accuracy {metrics['accuracy']:.4f}, n {metrics['n']}")
    plot_roc(y[ok], p[ok], out / "roc.png", title=f"{run_dir.name}: real vs synthetic")
    return metrics


# -- prediction -------------------------------------------------------------------------------


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
            batch = torch.stack([t for _, t in pending])
            scores = det.scores(batch)
            for (k, _), q, a in zip(pending, scores["p_synthetic"], scores["atypicality"],
                                    strict=True):
                a = None if a != a else float(a)
                results[k].update(p_synthetic=float(q), label=det.label(float(q), a), atypicality=a)
            pending.clear()

    for path in paths:
        results.append({"path": str(path), "p_synthetic": None, "label": None,
                        "atypicality": None, "error": None})
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
