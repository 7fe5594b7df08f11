"""Unlabelled training images (consistency training): a ``.txt`` list of image files, or any
dataset spec whose labels are then ignored.

They are opened as a one-class :class:`GalaxyDataset` so that the decode-once cache, the
framing and the corrupt-file handling of labelled data apply to them unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxymorph.data.dataset import GalaxyDataset, SourcePart
from galaxymorph.data.duplicates import file_digest, files_among
from galaxymorph.data.listing import listed_paths
from galaxymorph.data.sources import FileSource
from galaxymorph.errors import DataError
from galaxymorph.io_utils import read_json_object, write_json

_SHA256 = re.compile(r"[0-9a-f]{64}")

UNLABELLED = "unlabelled"
#: The run folder's record of the unlabelled images a network adapted to: each file's path,
#: size and SHA-256, so that evaluate still knows them by content after the data has moved.
UNLABELLED_USED_FILE = "unlabelled_used.json"
#: What runs of the first consistency-training release wrote instead (paths only).
LEGACY_USED_LIST = "unlabelled_used.txt"


@dataclass(frozen=True)
class UsedImage:
    """One unlabelled image a run trained on (``size``/``sha256`` None when it was unreadable
    when recorded, or in a legacy list)."""

    path: str
    size: int | None = None
    sha256: str | None = None


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


def record_used(folder: Path, locations: Iterable[str]) -> Path | None:
    """Record the unlabelled images at ``locations`` in run folder ``folder`` (absolute paths,
    sizes and digests; :func:`read_used` reads them back)."""
    records = []
    for loc in dict.fromkeys(os.path.realpath(loc) for loc in locations):
        try:
            size = os.stat(loc).st_size
        except OSError:
            size = None
        records.append(UsedImage(loc, size, file_digest(loc) if size is not None else None))
    return write_used(folder, records)


def write_used(folder: Path, records: Iterable[UsedImage]) -> Path | None:
    """Write ``records`` to ``folder``'s record (atomically); with none, remove any earlier
    record, so that a run rebuilt in the same folder never keeps a stale one."""
    records = list(dict.fromkeys(records))
    (folder / LEGACY_USED_LIST).unlink(missing_ok=True)
    if not records:
        (folder / UNLABELLED_USED_FILE).unlink(missing_ok=True)
        return None
    return write_json(folder / UNLABELLED_USED_FILE, {
        "format": 1, "about": "unlabelled images this run's network was trained on "
        "(consistency training); evaluate leaves them out",
        "files": [{"path": r.path, "size": r.size, "sha256": r.sha256} for r in records]})


def read_used(folder: Path) -> list[UsedImage]:
    """The unlabelled images run folder ``folder`` trained on ([] when none); every field is
    checked, since a model folder is a user's file."""
    path = folder / UNLABELLED_USED_FILE
    if not path.is_file():
        legacy = folder / LEGACY_USED_LIST
        return [UsedImage(p) for p in listed_paths(legacy)] if legacy.is_file() else []
    files = read_json_object(path).get("files")
    if not isinstance(files, list):
        raise DataError("no list of files in it", path)
    records = []
    for n, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise DataError(f"entry {n} is not an object with a path", path)
        size, digest = entry.get("size"), entry.get("sha256")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise DataError(f"entry {n}: size must be a whole number of bytes, got {size!r}", path)
        if digest is not None and not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            raise DataError(f"entry {n}: sha256 must be 64 hex digits, got {digest!r}", path)
        records.append(UsedImage(entry["path"], size, digest))
    return records


def used_among(folder: Path, locations: Sequence[str]) -> np.ndarray:
    """Which of ``locations`` are unlabelled images run folder ``folder`` trained on: the same
    file or HDF5 row, a copy of a file still on this machine, or (for recorded files no longer
    where they were: the data moved) a file of the same size and SHA-256. An HDF5 row is
    known by its file and row number only."""
    records = read_used(folder)
    if not records or not len(locations):
        return np.zeros(len(locations), dtype=bool)
    # By path first, for every record: an HDF5 row (``file.h5#3``) has no file of its own.
    mask = files_among(locations, [r.path for r in records])
    gone = [r for r in records if r.sha256 is not None and not os.path.exists(r.path)]
    if not gone:
        return mask
    sizes, digests = {r.size for r in gone}, {r.sha256 for r in gone}
    for i in np.flatnonzero(~mask):
        try:
            size = os.stat(locations[i]).st_size
        except OSError:
            continue  # unreadable files are reported by the decoder, not here
        mask[i] = size in sizes and file_digest(locations[i]) in digests  # hash only likely ones
    return mask
