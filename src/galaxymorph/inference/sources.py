"""Expand prediction inputs (files, folders, globs, dataset specs, catalog CSVs, ``.txt`` lists
of image paths) lazily.

A survey folder may hold millions of cutouts, so nothing here builds the list of all paths:
folders are walked with :func:`os.scandir` and globs with :func:`glob.iglob`, one entry at a
time. Every input is checked up front (:func:`check_inputs`) so that a typo fails at once, with
its name, instead of after an hour of predictions.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxymorph.data.imageio import is_image_path, read_image
from galaxymorph.data.listing import listed_paths
from galaxymorph.errors import DataError, ImageReadError

_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class Item:
    """One image to predict: ``key`` goes in the output's ``path`` column.

    ``source`` is ``None`` for a plain file (``key`` is its path) or the index of a dataset
    source in :class:`InputPlan` with the row ``index`` in it (HDF5 rows have no file).
    """

    key: str
    source: int | None = None
    index: int = -1


def as_list(inputs: str | Path | Iterable[str | Path]) -> list[str]:
    if isinstance(inputs, (str, Path)):
        return [str(inputs)]
    return [str(i) for i in inputs]


def _is_glob(text: str) -> bool:
    return any(c in text for c in _GLOB_CHARS) and not Path(text).exists()


def _is_catalog(text: str) -> bool:
    return text.lower().endswith(".csv") and Path(text).is_file()


def _is_list(text: str) -> bool:
    return text.lower().endswith(".txt") and Path(text).is_file()


class InputPlan:
    """The inputs of one prediction run, opened once; iterating yields :class:`Item` lazily.

    Picklable (dataset sources open their files lazily), so data-loader workers and Ray tasks
    can each walk it themselves instead of receiving a list of every path.
    """

    def __init__(self, inputs: str | Path | Iterable[str | Path]):
        self.inputs = as_list(inputs)
        if not self.inputs:
            raise DataError("no input given: name image files, folders, globs or a dataset spec")
        self.sources: list = []
        self._kinds: list[tuple[str, int | None]] = []
        for text in self.inputs:
            self._kinds.append(self._classify(text))

    def _classify(self, text: str) -> tuple[str, int | None]:
        from galaxymorph.data.specs import names_a_kind, open_source

        if names_a_kind(text) or _is_catalog(text) or Path(text).suffix.lower() in (".h5", ".hdf5"):
            self.sources.append(open_source(text))  # raises DataError naming the spec
            return "source", len(self.sources) - 1
        path = Path(text).expanduser()
        if _is_list(str(path)):
            return "list", None
        if path.is_dir():
            return "dir", None
        if path.is_file():
            return "file", None
        if _is_glob(text):
            if next(glob.iglob(os.path.expanduser(text), recursive=True), None) is None:
                raise DataError("glob pattern matches no files", text)
            return "glob", None
        raise DataError("no such file or folder (and not a dataset spec: catalog:CSV, "
                        "folder:PATH, galaxy10-decals:PATH.h5)", text)

    def __iter__(self) -> Iterator[Item]:
        # Keys are absolute, normalised paths: the same file reached as `predin/x.png` or
        # `../predin/x.png` from another folder is one key, so --resume never appends it twice.
        for text, (kind, src) in zip(self.inputs, self._kinds, strict=True):
            if kind == "file":
                # Named explicitly: kept even with an unknown suffix, so it is reported.
                yield Item(normalise_key(str(Path(text).expanduser())))
            elif kind == "list":
                # Named in the list: kept even with an unknown suffix or missing, so reported.
                for p in listed_paths(Path(text).expanduser()):
                    yield Item(normalise_key(p))
            elif kind == "dir":
                for p in walk_images(Path(text).expanduser()):
                    yield Item(normalise_key(p))
            elif kind == "glob":
                for p in glob.iglob(os.path.expanduser(text), recursive=True):
                    if os.path.isfile(p) and is_image_path(p):
                        yield Item(normalise_key(p))
            else:
                assert src is not None
                source = self.sources[src]
                for i in range(len(source)):
                    yield Item(normalise_key(source.location(i)), src, i)

    def count(self) -> int:
        """How many items there are (a second, cheap walk; used for the progress bar's total)."""
        return sum(1 for _ in self)

    def read(self, item: Item) -> np.ndarray:
        """Decode ``item`` to (H, W, 3) uint8; raises :class:`ImageReadError` naming it."""
        if item.source is None:
            return self.read_item(item)
        return self.sources[item.source].read(item.index)

    @staticmethod
    def read_item(item: Item) -> np.ndarray:
        """Decode a plain file's item."""
        if not is_image_path(item.key):
            raise ImageReadError("not an image file type this tool reads (JPEG, PNG, TIFF, "
                                 "FITS, ...)", item.key)
        return read_image(item.key)


def read_key(key: str) -> np.ndarray:
    """Decode the image an output's ``path`` names (:func:`normalise_key`): a file, or row
    ``N`` of an HDF5 file (``FILE.h5#N``); raises :class:`ImageReadError` naming it."""
    path, sep, row = key.rpartition("#")
    if sep and row.isdigit() and Path(path).suffix.lower() in (".h5", ".hdf5"):
        from galaxymorph.data.specs import open_source

        try:
            return open_source(f"h5:{path}").read(int(row))
        except ImageReadError:
            raise
        except (DataError, IndexError) as exc:
            raise ImageReadError(f"cannot read this row ({exc})", key) from exc
    return InputPlan.read_item(Item(key))


def normalise_key(key: str) -> str:
    """``key`` as an absolute path with ``.``/``..`` resolved (links kept: they are names the
    user chose); an HDF5 row ``FILE#N`` keeps its row. What the output's ``path`` column holds."""
    path, sep, row = key.rpartition("#") if "#" in key else (key, "", "")
    if sep and not row.isdigit():
        path, sep, row = key, "", ""
    return os.path.abspath(path) + sep + row


def walk_images(root: Path) -> Iterator[str]:
    """Image files under ``root``, recursively, hidden entries skipped; one at a time.

    Entries come in directory order (no sorting, which would need the whole listing in memory).
    """
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                subdirs = []
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir():
                            subdirs.append(entry.path)
                        elif entry.is_file() and is_image_path(entry.name):
                            yield entry.path
                    except OSError:
                        continue
        except OSError:
            continue  # unreadable folder: nothing from it (a permission issue, a race)
        stack.extend(reversed(subdirs))
