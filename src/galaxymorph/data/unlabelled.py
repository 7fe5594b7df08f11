"""Unlabelled training images (consistency training): a ``.txt`` list of image files, or any
dataset spec whose labels are then ignored.

They are opened as a one-class :class:`GalaxyDataset` so that the decode-once cache, the
framing and the corrupt-file handling of labelled data apply to them unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxymorph.data.dataset import GalaxyDataset, SourcePart
from galaxymorph.data.listing import listed_paths
from galaxymorph.data.sources import FileSource
from galaxymorph.errors import DataError

UNLABELLED = "unlabelled"


def open_unlabelled(spec: str | Path) -> GalaxyDataset:
    """The images ``spec`` names, all with label 0 of the single class ``"unlabelled"``."""
    from galaxymorph.data.specs import open_source

    spec = str(spec)
    path = Path(spec).expanduser()
    if spec.lower().endswith(".txt"):
        if not path.is_file():
            raise DataError("list of unlabelled images not found", spec)
        paths = [Path(p) for p in listed_paths(path)]
        source = FileSource(paths, np.zeros(len(paths), dtype=np.int64), [UNLABELLED], spec,
                            path.parent)
    else:
        source = open_source(spec)
    if len(source) == 0:
        raise DataError("no unlabelled images in it", spec)
    n = len(source)
    return GalaxyDataset(source, np.arange(n), np.zeros(n, dtype=np.int64), [UNLABELLED], spec,
                         parts=[SourcePart(spec, weak=True)])
