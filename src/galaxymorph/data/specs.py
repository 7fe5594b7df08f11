"""Dataset spec strings: ``galaxy10-decals[:PATH]``, ``galaxy10-sdss[:PATH]``,
``catalog:PATH.csv``, ``folder:PATH``.

A bare path is accepted too: a ``.csv`` is a catalog, an ``.h5`` a Galaxy10-layout file
(DECaLS classes), a folder is a class-per-subfolder tree (or a catalog when it holds
``labels.csv``, as the shared data sets do).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from galaxymorph import paths
from galaxymorph.data.registry import KNOWN
from galaxymorph.errors import DataError

if TYPE_CHECKING:
    from galaxymorph.data.sources import ImageSource

SPEC_HELP = ("galaxy10-decals[:PATH] | galaxy10-sdss[:PATH] | catalog:PATH.csv | folder:PATH "
             "| a .csv, .h5 or folder path")


SPEC_KINDS = (*KNOWN, "catalog", "folder", "h5")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``(kind, argument)`` of a spec: ``("catalog", "a.csv")``, ``("galaxy10-decals", None)``;
    ``("path", spec)`` when it names no kind. The only reader of the grammar: every command
    that takes a dataset spec asks this function what it is."""
    if spec in KNOWN:  # a bare name: the file in the cache folder
        return spec, None
    kind, sep, arg = spec.partition(":")
    # Windows drive letters and plain paths have no known kind before the colon.
    if sep and kind in SPEC_KINDS:
        return kind, arg or None
    return "path", spec


def names_a_kind(spec: str) -> bool:
    """Whether ``spec`` is spelt as a dataset spec (``kind:...`` or a known name), not a path."""
    return split_spec(spec.strip())[0] != "path"


def source_name(spec: str) -> str:
    """A dataset spec as a person names the data set, without the machine's folders: the
    dataset's folder (``gz1`` for ``catalog:../shared/data/gz1/labels.csv`` or
    ``/data/gz1``), with the catalog's file when it is not the folder's own catalog
    (``gz2_clean/train.csv``; but ``gz2_votes`` for ``gz2_votes/votes.csv``), a known
    dataset's name (``galaxy10-decals``), or an HDF5 file's name."""
    kind, arg = split_spec(str(spec).strip())
    if kind in KNOWN:
        return kind
    path = Path(str(arg or "").rstrip("/\\"))
    if kind == "folder" or not path.suffix:
        return path.name or str(spec)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return path.name
    folder = path.parent.name
    words = set(folder.replace("-", "_").split("_"))
    if folder and (path.name == "labels.csv" or path.stem in words):
        return folder
    return f"{folder}/{path.name}" if folder else path.name


def default_path(name: str) -> Path:
    return paths.data_dir() / KNOWN[name].filename


def open_source(spec: str) -> ImageSource:
    # Here, not at the top: the readers import pandas, which a `predict` over plain image
    # files (whose inputs are classified through this module) never needs.
    from galaxymorph.data.catalog import catalog_source, folder_source
    from galaxymorph.data.sources import H5Source

    kind, arg = split_spec(spec.strip())
    if kind in KNOWN:
        path = Path(arg).expanduser() if arg else default_path(kind)
        return H5Source(path, KNOWN[kind].class_names, spec)
    if kind == "h5":
        if not arg:
            raise DataError("h5: needs a path", spec)
        return H5Source(Path(arg).expanduser(), KNOWN["galaxy10-decals"].class_names, spec)
    if kind == "catalog":
        if not arg:
            raise DataError("catalog: needs a CSV path, e.g. catalog:data/labels.csv", spec)
        return catalog_source(Path(arg).expanduser(), spec)
    if kind == "folder":
        if not arg:
            raise DataError("folder: needs a path", spec)
        return folder_source(Path(arg).expanduser(), spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".csv":
        return catalog_source(path, spec)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return H5Source(path, KNOWN["galaxy10-decals"].class_names, spec)
    if path.is_dir():
        if (path / "labels.csv").exists():
            return catalog_source(path / "labels.csv", spec)
        return folder_source(path, spec)
    if not path.exists():
        raise DataError(f"unknown dataset spec (expected {SPEC_HELP}) and no such file", spec)
    raise DataError(f"cannot tell what dataset this is (expected {SPEC_HELP})", spec)
