"""galmorph: galaxy morphology classification from survey images.

The Python API mirrors the command line::

    import galmorph
    galmorph.train(data="catalog:gz1/labels.csv", label_map="gz1-4", model="cnn4-wide", out="runs/a")
    galmorph.evaluate(model="runs/a", out="runs/a/eval")
    galmorph.predict(["galaxy.jpg"], model="default")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from galmorph.data import open_dataset
    from galmorph.evaluation.api import evaluate
    from galmorph.evaluation.compare import compare
    from galmorph.inference.loading import load_classifier
    from galmorph.training.ensemble import ensemble
    from galmorph.training.run import train

_LAZY = {
    "open_dataset": "galmorph.data.dataset",
    "train": "galmorph.training.run",
    "evaluate": "galmorph.evaluation.api",
    "compare": "galmorph.evaluation.compare",
    "ensemble": "galmorph.training.ensemble",
    "load_classifier": "galmorph.inference.loading",
    "predict": "galmorph.inference.predict",
    "create_model": "galmorph.models.registry",
    "list_models": "galmorph.models.registry",
    "train_gan": "galmorph.generative.trainer",
    "sample": "galmorph.generative.sampling",
    "fid": "galmorph.generative.fid",
}

__all__ = ["__version__", "compare", "create_model", "ensemble", "evaluate", "fid", "list_models",
           "load_classifier", "open_dataset", "predict", "sample", "train", "train_gan"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import galmorph` (and the CLI's --help) does not pull in torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'galmorph' has no attribute {name!r}")
