"""Which images of a data set a model has already seen: its saved split's training and
validation folds (matched by id, and by file where two catalogs name images alike), its own test
fold, and the unlabelled images it adapted to. ``evaluate`` leaves seen images out."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from galaxymorph.errors import DataError


def local_ids(ds, split_ids) -> list[str]:
    """The ids of ``ds`` that ``split_ids`` name, in their order.

    A multi-source split names ids under their source's folder (``gz1/images/x.jpeg``); the
    same image opened on its own is ``images/x.jpeg``. Only this data's own folder may prefix
    it: two surveys' catalogs can reuse a file name for other galaxies.
    """
    from galaxymorph.data.sources import source_root

    have = set(ds.ids)
    root = source_root(ds.source)
    parts = root.parts if root is not None else ()
    prefixes = ["/".join(parts[-d:]) + "/" for d in range(1, len(parts))]
    out = []
    for k in split_ids:
        if k in have:
            out.append(k)
            continue
        local = next((k[len(p):] for p in prefixes if k.startswith(p) and k[len(p):] in have), None)
        if local is not None:
            out.append(local)
    return out


def seen_in_training(ds, saved, home: SplitHome | None = None) -> np.ndarray:
    """Which images of ``ds`` are in the training or validation folds of split ``saved``
    (matched as :func:`local_ids` does). Two catalogs can name different galaxies alike
    (``images/0001.png``): when the split's own data is here, in another folder, a name
    counts only if it is the same file (or one of identical content)."""
    from galaxymorph.data.duplicates import files_among

    seen = set(local_ids(ds, [*saved.train, *saved.val]))
    mask = np.array([i in seen for i in ds.ids], dtype=bool)
    if mask.any():
        files = (home or SplitHome(saved, ds)).files([*saved.train, *saved.val])
        if files is not None:
            candidates = np.flatnonzero(mask)
            mask[candidates] = files_among([ds.location(int(i)) for i in candidates], files)
    return mask


def is_training_data(ds, saved, home: SplitHome) -> bool:
    """Whether ``ds`` holds the model's own test fold: every test id, and (when the split's
    data is here, in another folder) as the same files, not other images named alike."""
    from galaxymorph.data.duplicates import files_among

    if not _contains(ds.ids, saved.test):
        return False
    files = home.files(saved.test)
    if files is None:
        return True
    position = {k: i for i, k in enumerate(ds.ids)}
    return bool(files_among([ds.location(position[k]) for k in saved.test], files).all())


class SplitHome:
    """Where a single-source split's images live, when its data opens here from another
    folder than ``ds``'s (opened at most once, and only if asked)."""

    def __init__(self, saved, ds) -> None:
        self.saved, self.ds = saved, ds

    @cached_property
    def source(self):
        """The split's own data; None when ids alone must decide (a multi-source split, the
        same folder, or the split's data is not on this machine)."""
        from galaxymorph.data.specs import open_source

        if self.saved.sources is not None or not self.saved.spec:
            return None
        try:
            src = open_source(self.saved.spec)
        except (DataError, OSError, ValueError):
            return None
        root, here = _where(src), _where(self.ds.source)
        return None if root is None or here is None or root == here else src

    def files(self, ids: list[str]) -> list[str] | None:
        """The files of the split's images ``ids`` (None: ids decide)."""
        if self.source is None:
            return None
        return [self.source.location(self._index[k]) for k in ids if k in self._index]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.source.ids)}


def _where(source) -> Path | None:
    """What makes two sources' ids name the same images: an HDF5 file (its ids are row
    numbers), or the folder a catalog's file names are relative to."""
    from galaxymorph.data.sources import H5Source, source_root

    return source.path.resolve() if isinstance(source, H5Source) else source_root(source)


def _contains(ids: list[str], wanted: list[str]) -> bool:
    have = set(ids)
    return bool(wanted) and all(i in have for i in wanted)


def model_folder(model: str | Path) -> Path:
    """The run folder of ``model`` (a folder, a checkpoint or weights file in it, or "default")."""
    from galaxymorph.models.loading import default_model_dir

    folder = default_model_dir() if str(model) == "default" else Path(model)
    if folder.is_file():
        folder = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    return folder


def model_split_path(model: str | Path) -> Path | None:
    path = model_folder(model) / "split.json"
    return path if path.exists() else None


def leave_out_unlabelled(ds, model: str | Path, include_seen: bool,
                          notes: list[str]) -> np.ndarray | None:
    """Which images of ``ds`` the model was trained on without labels (consistency training's
    ``unlabelled_used.json``), with a note; None when they are to be scored (none, or
    ``include_seen``). A network adapted to an image scores it optimistically."""
    from galaxymorph.data.unlabelled import UNLABELLED_USED_FILE, used_among

    adapted = used_among(model_folder(model), [ds.location(i) for i in range(len(ds))])
    if not adapted.any():
        return None
    n = int(adapted.sum())
    if include_seen:
        notes.append(f"{n} of {len(ds)} images are among the model's unlabelled training images; "
                     "scored anyway (include_seen), so the figures are optimistic")
        return None
    notes.append(f"{n} of {len(ds)} images are among the model's unlabelled training images "
                 f"({UNLABELLED_USED_FILE}) and were left out (--include-seen scores them all)")
    return adapted
