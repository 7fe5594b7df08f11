"""Train a real-vs-synthetic detector, through the classifier's own training path.

A detector is an ordinary galaxymorph run with two classes, ``real`` and ``synthetic``: the data
is an assembled catalog (:mod:`galaxymorph.detection.assembly`), training is ``galaxymorph.train``
split by ``group`` (Lightning, early stopping, checkpoints, curves, calibration, model
artifact), and loading is ``load_classifier``. What this module adds: the generator
families, the settings recorded in ``detector.json``, and after training the calibration
(:mod:`.calibration`) and the test fold's detector metrics. The run folder's layout is in
:mod:`.run_folder`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from galaxymorph.detection.assembly import (
    ASSEMBLY,
    CATALOG,
    CLASS_NAMES,
    assemble,
    read_catalog,
    suggested_real_crop,
)
from galaxymorph.detection.augment import Compression, Degradation
from galaxymorph.detection.calibration import calibrate, clean_column
from galaxymorph.detection.detector import DETECTOR_FILE, Detector, read_detector_info
from galaxymorph.detection.evaluate import score_catalog
from galaxymorph.detection.generators import choose_families, family_specs
from galaxymorph.detection.run_folder import DATA_DIR
from galaxymorph.detection.scoring import VERDICTS
from galaxymorph.errors import ConfigError
from galaxymorph.io_utils import read_json_object, write_json
from galaxymorph.models.views import check_view

log = logging.getLogger("galaxymorph")

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
                   verdict: str = "combined",
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
    from the real training images (``typicality.npz``). ``verdict``: ``"combined"`` (default)
    decides on one calibrated ``synthetic_score``, a monotone logistic combination of the
    network's p(synthetic), the statistics head's and the atypicality (:mod:`.verdict`; fitted
    on the real calibration images and the generated images, also held out family by family),
    thresholded at the ``false_alarm`` rate on real images only; the earlier rules stay
    available: ``"either"`` (p(synthetic) *or* atypicality, each at half the rate) and
    ``"p_synthetic"`` (p(synthetic) alone at the whole rate). The
    thresholds are set on the real validation images plus up to ``calibration_real`` other real
    images kept out of training (``assemble``'s calibration reserve; 0: the validation fold
    alone; with the noise statistics, every other reserve image joins the statistics'
    reference instead). ``atypicality``: what the fake-free score measures the distance to real galaxies in:
    ``"features"`` (the network's penultimate layer), ``"features+statistics"`` (also sixteen
    noise statistics of the images, :mod:`.statistics`; the larger of the two percentiles) or
    ``"statistics"`` (the noise statistics' percentile alone: one tail on real images, not two).
    ``statistics_head``: also fit a logistic regression on the noise statistics of the training
    fold's real and generated images (:mod:`.statistics_head`), one part of the verdict, so a
    generator the detector saw is caught even when the network learnt only another one.
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


def recalibrate_detector(run_dir: str | Path, *, verdict: str | None = None,
                         false_alarm: float | None = None) -> DetectorRun:
    """Fit a trained detector's references, statistics head and decision rule again, without
    training its network: with ``verdict`` (e.g. ``"combined"``, to give a detector trained
    before the one verdict that verdict) or ``false_alarm`` changed, or as they were. The
    test fold's ``detector_metrics.json`` is written afresh."""
    run_dir = Path(run_dir)
    info = read_detector_info(run_dir)
    if not info or not (run_dir / "split.json").is_file():
        raise ConfigError("not a trained detector run folder (detector.json and split.json)",
                          run_dir)
    settings = dict(info.get("settings", {}))
    if verdict is not None:
        if verdict not in VERDICTS:
            raise ConfigError(f"unknown verdict '{verdict}'; use one of {', '.join(VERDICTS)}")
        settings["verdict"] = verdict
    if false_alarm is not None:
        if not 0 <= false_alarm < 1:
            raise ConfigError(f"false_alarm must be in [0, 1), got {false_alarm}")
        settings["false_alarm"] = false_alarm
    write_json(run_dir / DETECTOR_FILE, {**info, "settings": settings})
    return _finish(run_dir, {})


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
    info = calibrate(run_dir, info, df, csv.parent, split)
    rows = df[df["filename"].isin(set(split.get("test", [])))]
    _, metrics = score_catalog(Detector.load(run_dir),
                               [csv.parent / f for f in rows[clean_column(rows)]], rows)
    metrics.update({"split": "test", "held_out": "test fold of the run's own split (by group), "
                    "undegraded images"})
    write_json(run_dir / "detector_metrics.json", metrics)
    _annotate_card(run_dir, info)
    return DetectorRun(run_dir, metrics, summary, csv)


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
