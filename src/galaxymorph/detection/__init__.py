"""Real-vs-synthetic detection: is this galaxy image real or generated?

    from galaxymorph.detection import assemble, train_detector, evaluate_detector, predict_detector
    run = train_detector(real="../shared/data/gz1", fake=["gan_samples/labels.csv"], out="runs/det",
                         real_crop=0.5)
    evaluate_detector(run.run_dir, real="../shared/data/gz1", fake="other_gan/labels.csv",
                      out="runs/det/eval-unseen")
    predict_detector("runs/det", ["galaxy.png"])  # [{"path", "synthetic_score", "verdict", ...}]
    det = load_detector("runs/det")  # the one Detector every command uses (predict, app)

Everything heavy is imported lazily, so ``import galaxymorph.detection`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from galaxymorph.detection.assembly import Resampling, assemble
    from galaxymorph.detection.detector import Detector, load_detector
    from galaxymorph.detection.evaluate import evaluate_detector
    from galaxymorph.detection.predict import predict_detector
    from galaxymorph.detection.run_folder import training_groups
    from galaxymorph.detection.scoring import detector_metrics
    from galaxymorph.detection.train import DetectorRun, recalibrate_detector, train_detector

_LAZY = {
    "assemble": "galaxymorph.detection.assembly",
    "Resampling": "galaxymorph.detection.assembly",
    "Detector": "galaxymorph.detection.detector",
    "load_detector": "galaxymorph.detection.detector",
    "train_detector": "galaxymorph.detection.train",
    "evaluate_detector": "galaxymorph.detection.evaluate",
    "predict_detector": "galaxymorph.detection.predict",
    "training_groups": "galaxymorph.detection.run_folder",
    "DetectorRun": "galaxymorph.detection.train",
    "recalibrate_detector": "galaxymorph.detection.train",
    "detector_metrics": "galaxymorph.detection.scoring",
}

__all__ = [
    "Detector",
    "DetectorRun",
    "Resampling",
    "assemble",
    "detector_metrics",
    "evaluate_detector",
    "load_detector",
    "predict_detector",
    "recalibrate_detector",
    "train_detector",
    "training_groups",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'galaxymorph.detection' has no attribute {name!r}")
