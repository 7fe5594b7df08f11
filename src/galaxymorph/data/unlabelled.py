"""Unlabelled training images (consistency training): a ``.txt`` list of image files, or any
dataset spec whose labels are then ignored.

They are opened as a one-class :class:`GalaxyDataset` so that the decode-once cache, the
framing and the corrupt-file handling of labelled data apply to them unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from galaxymorph.data.dataset import GalaxyDataset, SourcePart
from galaxymorph.data.listing import listed_paths
from galaxymorph.data.sources import FileSource
from galaxymorph.errors import DataError
from galaxymorph.io_utils import write_text

UNLABELLED = "unlabelled"
#: The run folder's list of the unlabelled images a network adapted to (one path a line).
UNLABELLED_USED_FILE = "unlabelled_used.txt"


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


def write_used_list(path: Path, locations: Iterable[str]) -> Path:
    """Write the unlabelled images a run used, as absolute paths, to the ``.txt`` list
    ``path`` (atomically; read back with :func:`read_used_list`)."""
    lines = [os.path.realpath(loc) for loc in locations]
    header = "# unlabelled images this run's network was trained on (consistency training)\n"
    return write_text(path, header + "".join(f"{line}\n" for line in lines))


def read_used_list(path: Path) -> list[str]:
    """The paths :func:`write_used_list` wrote ([] when the run has no such list)."""
    return list(listed_paths(path)) if path.is_file() else []

