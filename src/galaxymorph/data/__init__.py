"""Data layer: dataset specs, image decoding, label maps, splits, transforms, caches.

The names below load on first use (PEP 562): importing one submodule, such as
``galaxymorph.data.transforms`` on the prediction path, then does not import pandas with the
dataset readers (a third of a second of every short ``predict`` run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galaxymorph.data.dataset import GalaxyDataset, open_dataset
    from galaxymorph.data.imageio import decode_image, read_image
    from galaxymorph.data.label_maps import LabelMap, load_label_map

_WHERE = {"GalaxyDataset": "dataset", "open_dataset": "dataset", "decode_image": "imageio",
          "read_image": "imageio", "LabelMap": "label_maps", "load_label_map": "label_maps"}

__all__ = ["GalaxyDataset", "LabelMap", "decode_image", "load_label_map", "open_dataset", "read_image"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"galaxymorph.data.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'galaxymorph.data' has no attribute {name!r}")
