"""galaxymorph: galaxy morphology classification from survey images.

The Python API mirrors the command line::

    import galaxymorph
    galaxymorph.train(data="catalog:gz1/labels.csv", label_map="gz1-4", model="cnn4-wide", out="runs/a")
    galaxymorph.finetune("default", data="catalog:mine.csv", out="runs/mine")
    galaxymorph.evaluate(model="runs/a", out="runs/a/eval")
    galaxymorph.predict(["galaxy.jpg"], model="default")
    galaxymorph.predict(["galaxy.jpg"], detector=galaxymorph.load_detector("runs/det"))
    galaxymorph.build_index(["catalog:labels.csv"], model="default", out="index")
    galaxymorph.similar("index", ["galaxy.jpg"], k=10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:  # pragma: no cover
    from galaxymorph.data import open_dataset
    from galaxymorph.detection.detector import load_detector
    from galaxymorph.evaluation.api import evaluate
    from galaxymorph.evaluation.calibrate import calibrate
    from galaxymorph.evaluation.compare import compare
    from galaxymorph.inference.embed import embed
    from galaxymorph.models.loading import load_classifier
    from galaxymorph.search.build import add_to_index, build_index
    from galaxymorph.search.index import similar
    from galaxymorph.search.maps import draw_map
    from galaxymorph.search.odd import rank_odd
    from galaxymorph.training.ensemble import ensemble
    from galaxymorph.training.finetune import finetune
    from galaxymorph.training.run import train

_LAZY = {
    "open_dataset": "galaxymorph.data.dataset",
    "train": "galaxymorph.training.run",
    "evaluate": "galaxymorph.evaluation.api",
    "calibrate": "galaxymorph.evaluation.calibrate",
    "compare": "galaxymorph.evaluation.compare",
    "ensemble": "galaxymorph.training.ensemble",
    "finetune": "galaxymorph.training.finetune",
    "load_classifier": "galaxymorph.models.loading",
    "load_detector": "galaxymorph.detection.detector",
    "predict": "galaxymorph.inference.predict",
    "embed": "galaxymorph.inference.embed",
    "build_index": "galaxymorph.search.build",
    "add_to_index": "galaxymorph.search.build",
    "similar": "galaxymorph.search.index",
    "rank_odd": "galaxymorph.search.odd",
    "draw_map": "galaxymorph.search.maps",
    "create_model": "galaxymorph.models.registry",
    "list_models": "galaxymorph.models.registry",
    "train_gan": "galaxymorph.generative.trainer",
    "sample": "galaxymorph.generative.sampling",
    "fid": "galaxymorph.generative.fid",
}

__all__ = ["__version__", "add_to_index", "build_index", "calibrate", "compare", "create_model",
           "draw_map", "embed", "ensemble", "evaluate", "fid", "finetune", "list_models",
           "load_classifier", "load_detector", "open_dataset", "predict", "rank_odd", "sample",
           "similar", "train", "train_gan"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import galaxymorph` (and the CLI's --help) does not pull in torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'galaxymorph' has no attribute {name!r}")
