"""Image sources: where pixels and raw labels come from (an HDF5 file or image files).

A source knows nothing about label maps or splits; :mod:`galaxymorph.data.dataset` adds those.
Sources are cheap to pickle: the HDF5 handle is opened lazily in each process, so data-loader
workers each get their own and the 2.7 GB Galaxy10 file is never loaded whole.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galaxymorph.data.imageio import MAX_PIXELS, check_classifiable, read_image
from galaxymorph.errors import DataError, ImageReadError


class ImageSource(abc.ABC):
    """Raw images with integer labels and the class names those labels index."""

    spec: str
    class_names: list[str]
    labels: np.ndarray  # (N,) int64 raw labels
    ids: list[str]  # stable, unique per image: what split.json records
    metadata: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @abc.abstractmethod
    def read(self, index: int) -> np.ndarray:
        """The image at ``index`` as ``(H, W, 3)`` uint8; raises ImageReadError."""

    @abc.abstractmethod
    def location(self, index: int) -> str:
        """Where image ``index`` lives, for messages and prediction output."""


#: Most rows an HDF5 source may declare: ``ans`` is read whole (8 bytes a row), and a file can
#: declare any shape without storing it. 50 million is 50x the largest galaxy catalogue in use.
MAX_H5_ROWS = 50_000_000
#: HDF5 chunk cache per open file. h5py's default (1 MiB) is smaller than one 16-image gzip chunk
#: of 256 px cutouts (3 MiB), so row-by-row reads would decompress each chunk 16 times.
H5_CHUNK_CACHE_BYTES = 64 << 20


def check_h5_images(shape: tuple[int, ...], where: Path) -> None:
    """Refuse, from the declared shape alone (nothing read), an ``images`` dataset we cannot use."""
    if len(shape) != 4 or shape[-1] != 3:
        raise DataError(f"'images' has shape {shape}, expected (N, H, W, 3)", where)
    n, h, w = shape[:3]
    if h * w > MAX_PIXELS:
        raise DataError(f"'images' rows are {w}x{h} pixels, more than the {MAX_PIXELS:,} this tool "
                        "decodes per image", where)
    if n > MAX_H5_ROWS:
        raise DataError(f"'images' declares {n:,} rows, more than the {MAX_H5_ROWS:,} this tool "
                        "reads from one file", where)


class H5Source(ImageSource):
    """Galaxy10-style HDF5: ``images`` (N, H, W, 3) uint8 and ``ans`` (N,) integer labels."""

    def __init__(self, path: str | Path, class_names: list[str], spec: str):
        import h5py

        self.path = Path(path)
        self.spec = spec
        self.class_names = list(class_names)
        self._h5: h5py.File | None = None
        self._images: h5py.Dataset | None = None
        if not self.path.exists():
            raise DataError("HDF5 file not found", self.path,
                            hint=f"download it with `galaxymorph data download {spec.split(':')[0]}` "
                                 "or pass its path as SPEC:PATH")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("images", "ans") if k not in f]
                if missing:
                    raise DataError(f"HDF5 file has no dataset {' or '.join(map(repr, missing))} "
                                    f"(found: {', '.join(f.keys()) or 'nothing'}); expected the "
                                    "Galaxy10 layout", self.path)
                images, ans = f["images"], f["ans"]
                if not isinstance(images, h5py.Dataset) or not isinstance(ans, h5py.Dataset):
                    raise DataError("'images' and 'ans' must be datasets, not groups", self.path)
                check_h5_images(tuple(images.shape), self.path)
                if ans.ndim != 1:
                    raise DataError(f"'ans' has shape {ans.shape}, expected (N,)", self.path)
                if ans.shape[0] != images.shape[0]:
                    raise DataError(f"'images' has {images.shape[0]} rows but 'ans' has "
                                    f"{ans.shape[0]}", self.path)
                if ans.dtype.kind not in "iu":
                    raise DataError(f"'ans' holds {ans.dtype}, expected integer labels", self.path)
                self.labels = np.asarray(ans[()], dtype=np.int64)
                self.image_shape = tuple(images.shape[1:])
                meta = {k: f[k][()] for k in ("ra", "dec", "redshift", "pxscale")
                        if k in f and f[k].shape[:1] == (len(self.labels),)}
        except DataError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"not a readable HDF5 file, or truncated ({exc})", self.path) from exc
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"labels span {self.labels.min()}..{self.labels.max()}, outside the "
                            f"{len(self.class_names)} classes of {spec.split(':')[0]}", self.path)
        self.ids = [f"{self.path.name}#{i}" for i in range(len(self.labels))]
        self.metadata = pd.DataFrame(meta) if meta else None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = state["_images"] = None  # each worker process opens its own handle
        return state

    def _file(self):
        import h5py

        if self._h5 is None:
            # A cache of several chunks (and a prime number of slots, as HDF5 advises), so
            # consecutive rows of one compressed chunk decompress it once.
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=H5_CHUNK_CACHE_BYTES,
                                 rdcc_nslots=10007)
        return self._h5

    def _dataset(self):
        # Held open: the chunk cache belongs to an open dataset, so looking `images` up again
        # for every row threw it away and decompressed a whole chunk per row.
        if self._images is None:
            self._images = self._file()["images"]
        return self._images

    def read(self, index: int) -> np.ndarray:
        try:
            row = np.asarray(self._dataset()[index], dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise ImageReadError(f"cannot read image {index} ({exc}); the file may be truncated",
                                 self.path) from exc
        return check_classifiable(row, self.location(index))

    def location(self, index: int) -> str:
        return f"{self.path}#{index}"


class FileSource(ImageSource):
    """Images as files, with labels from a catalog CSV or from folder names."""

    def __init__(self, paths: list[Path], labels: np.ndarray, class_names: list[str], spec: str,
                 root: Path, metadata: pd.DataFrame | None = None):
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.spec = spec
        self.root = root
        self.metadata = metadata
        self.ids = [_rel(p, root) for p in self.paths]

    def read(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])

    def location(self, index: int) -> str:
        return str(self.paths[index])


def _rel(path: Path, root: Path) -> str:
    """The image's id: its path relative to the source's folder, with ``..`` for a catalog that
    names images elsewhere, so that a ``split.json`` made on one machine holds on another with
    the same layout (an absolute path would tie it to the first machine's folders)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        pass
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return path.as_posix()


class ConcatSource(ImageSource):
    """Several sources as one: image ``i`` of part ``k`` is index ``offsets[k] + i``.

    Labels stay each part's raw labels (and class names); :func:`galaxymorph.data.dataset.open_dataset`
    maps them onto one class list. Ids are each part's ids under the shortest tail of the part's folder that
    tells it from the others (``gz1/images/1.jpeg``, ``gz2_clean/images/1.jpg``), so two
    catalogs with the same file names stay apart; the same file in two parts is an error (it
    could land in two folds).
    """

    def __init__(self, parts: list[ImageSource]):
        self.parts = list(parts)
        self.spec = " + ".join(p.spec for p in self.parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.labels = np.concatenate([p.labels for p in self.parts]).astype(np.int64)
        self.class_names = []  # per part: see parts[k].class_names
        self.ids = _prefixed_ids(self.parts)
        metas = [p.metadata for p in self.parts]
        self.metadata = None
        if any(m is not None for m in metas):
            self.metadata = pd.concat([m if m is not None else pd.DataFrame(index=range(len(p)))
                                       for m, p in zip(metas, self.parts, strict=True)],
                                      ignore_index=True)

    def part_of(self, index: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return k, index - int(self.offsets[k])

    def read(self, index: int) -> np.ndarray:
        k, i = self.part_of(index)
        return self.parts[k].read(i)

    def location(self, index: int) -> str:
        k, i = self.part_of(index)
        return self.parts[k].location(i)


def source_root(source: ImageSource) -> Path | None:
    """The folder a source's ids are relative to (None for sources without one)."""
    if isinstance(source, FileSource):
        return source.root.resolve()
    if isinstance(source, H5Source):
        return source.path.resolve().parent
    return None


def root_prefixes(roots: list[Path]) -> dict[Path, str]:
    """Each distinct folder's id prefix: the shortest tail of its path that no other folder
    ends with (``gz1/``, ``gz2_clean/``; ``a/images/`` beside ``b/images/``).

    A prefix depends only on the folders themselves, never on which other sources a run adds:
    a weak-label catalog elsewhere on disk must not rename the ids of gz1/ in ``split.json``.
    """
    distinct = list(dict.fromkeys(roots))
    out: dict[Path, str] = {}
    for root in distinct:
        others = [r for r in distinct if r != root]
        for depth in range(1, len(root.parts) + 1):
            tail = root.parts[-depth:]
            if not any(o.parts[-depth:] == tail for o in others):
                break
        out[root] = "/".join(p.strip("/") for p in tail if p.strip("/")) + "/"
    return out


def _prefixed_ids(parts: list[ImageSource]) -> list[str]:
    roots = [source_root(p) for p in parts]
    prefixes = root_prefixes(roots) if all(roots) and len(set(roots)) > 1 else {}
    ids: list[str] = []
    seen: dict[str, str] = {}
    for n, (part, root) in enumerate(zip(parts, roots, strict=True)):
        # One folder for every part: plain ids; parts without a folder: their index.
        prefix = prefixes.get(root, "") if all(roots) or len(parts) == 1 else f"{n}:"
        for k in part.ids:
            key = prefix + k
            if key in seen:
                raise DataError(f"image '{key}' is in both {seen[key]} and {part.spec}; a dataset "
                                "may hold each image once (drop it from one of the sources)", part.spec)
            seen[key] = part.spec
            ids.append(key)
    return ids
