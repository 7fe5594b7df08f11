"""GAN augmentation: a class-conditional GAN, sampling to a catalog, galleries, and FID.

Public API (imported lazily, so ``import galaxymorph.generative`` stays cheap)::

    train_gan(out_dir, GanConfig(data=..., ...), resume=False) -> dict
    sample(run_dir, out_dir, n, class_name=None) -> Path   # labels.csv of a catalog: dataset
    gallery(run_dir, out_png, data=None) -> Path
    fid(real_spec, fake_spec, features="inception", per_class=False, n=None) -> dict
    frechet_distance(mu1, sigma1, mu2, sigma2) -> float
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "GanConfig": "galaxymorph.generative.config",
    "train_gan": "galaxymorph.generative.trainer",
    "load_generator": "galaxymorph.generative.sampling",
    "sample": "galaxymorph.generative.sampling",
    "gallery": "galaxymorph.generative.gallery",
    "fid": "galaxymorph.generative.fid",
    "frechet_distance": "galaxymorph.generative.fid",
    "load_inception": "galaxymorph.generative.fid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'galaxymorph.generative' has no attribute '{name}'")
