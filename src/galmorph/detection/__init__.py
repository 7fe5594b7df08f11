"""Real-vs-synthetic detection: is this galaxy image real or generated?

    from galmorph.detection import assemble, train_detector, evaluate_detector, predict_detector
    run = train_detector(real="../shared/data/gz1", fake=["gan_samples/labels.csv"], out="runs/det",
                         real_crop=0.5)
    evaluate_detector(run.run_dir, real="../shared/data/gz1", fake="other_gan/labels.csv",
                      out="runs/det/eval-unseen")
    predict_detector("runs/det", ["galaxy.png"])  # [{"path", "p_synthetic", "label", "error"}]

Everything heavy is imported lazily, so ``import galmorph.detection`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from galmorph.detection.api import (
        DetectorRun,
        evaluate_detector,
        predict_detector,
        train_detector,
        training_groups,
    )
    from galmorph.detection.assembly import Resampling, assemble
    from galmorph.detection.scoring import detector_metrics

_LAZY = {
    "assemble": "galmorph.detection.assembly",
    "Resampling": "galmorph.detection.assembly",
    "train_detector": "galmorph.detection.api",
    "evaluate_detector": "galmorph.detection.api",
    "predict_detector": "galmorph.detection.api",
    "training_groups": "galmorph.detection.api",
    "DetectorRun": "galmorph.detection.api",
    "detector_metrics": "galmorph.detection.scoring",
}

__all__ = [
    "DetectorRun",
    "Resampling",
    "assemble",
    "detector_metrics",
    "evaluate_detector",
    "predict_detector",
    "train_detector",
    "training_groups",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'galmorph.detection' has no attribute {name!r}")
