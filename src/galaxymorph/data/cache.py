"""Decode-once cache: every image of a dataset, cropped and resized, in one uint8 array on disk.

Decoding a 424x424 JPEG costs more than a small CNN's forward pass, so training epochs read
this memory-mapped array instead of the files. The cache key covers the files (path, size,
mtime of the source), the ids and the preprocessing, so a changed input builds a new cache.
Images that fail to decode are reported once, recorded, and left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from galaxymorph import paths
from galaxymorph.data.dataset import GalaxyDataset
from galaxymorph.data.transforms import Preprocessing, prepare
from galaxymorph.errors import DataError, ImageReadError
from galaxymorph.io_utils import write_json
from galaxymorph.processes import loader_worker_init
from galaxymorph.runtime import default_workers


@dataclass
class DecodedImages:
    """``images[i]`` is ``dataset`` image ``i`` as (3, S, S) uint8; ``ok[i]`` False if unreadable."""

    images: np.ndarray  # (N, 3, S, S) uint8, memory-mapped
    ok: np.ndarray  # (N,) bool
    errors: dict[int, str]
    path: Path | None = None

    def require_readable(self, positions: np.ndarray, what: str, where: str) -> np.ndarray:
        """The readable ones among ``positions``; one clear error when there are none (instead
        of a sampler's ``num_samples=0`` or a zero-size array deep inside a library)."""
        positions = np.asarray(positions, dtype=np.int64)
        good = positions[self.ok[positions]] if len(positions) else positions
        if len(good) == 0:
            bad = [self.errors[int(i)] for i in positions[:3] if int(i) in self.errors]
            detail = (f": all {len(positions)} unreadable, e.g. " + "; ".join(bad)) if len(positions) \
                else ": it is empty"
            raise DataError(f"{what} has no readable image{detail}", where)
        return good


class DecodingDataset(Dataset):
    """Items ``(dataset index, (3, S, S) uint8 image, error message or "")``.

    Decodes and prepares one image per item, so a DataLoader spreads the work over processes.
    An unreadable image yields a blank tensor and its message instead of raising: one bad
    file in thousands is reported by the caller, not fatal. ``positions`` picks a subset.
    """

    def __init__(self, dataset: GalaxyDataset, pre: Preprocessing,
                 positions: np.ndarray | None = None):
        self.dataset, self.pre = dataset, pre
        self.positions = np.arange(len(dataset)) if positions is None else np.asarray(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int):
        i = int(self.positions[j])
        try:
            return i, prepare(self.dataset.read(i), self.pre), ""
        except ImageReadError as exc:
            blank = torch.zeros(3, self.pre.image_size, self.pre.image_size, dtype=torch.uint8)
            return i, blank, str(exc)


def collate_decoded(batch) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(indices, images, error messages)`` of a batch of :class:`DecodingDataset` items."""
    idx = torch.tensor([b[0] for b in batch], dtype=torch.long)
    return idx, torch.stack([b[1] for b in batch]), [b[2] for b in batch]


def cache_key(dataset: GalaxyDataset, pre: Preprocessing) -> str:
    src = dataset.source
    h = hashlib.sha256()
    h.update(json.dumps(pre.to_dict(), sort_keys=True).encode())
    h.update(type(src).__name__.encode())
    files = [getattr(src, "path", None)] if hasattr(src, "path") else []
    for f in files:
        st = Path(f).stat()
        h.update(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    for loc in (dataset.location(i) for i in range(len(dataset))):
        h.update(loc.encode())
        h.update(b"\0")
    if not files and hasattr(src, "paths"):
        # Catalogs: a changed image file changes the key without hashing pixel data.
        for p in (src.paths[i] for i in dataset.indices):
            try:
                st = p.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(b"missing")
    return h.hexdigest()[:24]


def decode_all(dataset: GalaxyDataset, pre: Preprocessing, cache: bool | Path = True,
               num_workers: int | None = None, batch_size: int = 64,
               progress: bool = True) -> DecodedImages:
    """Decode, crop and resize every image once (in parallel), reusing a cache when present."""
    n, s = len(dataset), pre.image_size
    folder = None
    if cache:
        root = Path(cache) if isinstance(cache, (str, Path)) else decoded_root()
        folder = root / cache_key(dataset, pre)
        meta_path = folder / "meta.json"
        remove_stale_parts(root)
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            images = np.load(folder / "images.npy", mmap_mode="r")
            if images.shape == (n, 3, s, s):
                errors = {int(k): v for k, v in meta["errors"].items()}
                ok = np.ones(n, dtype=bool)
                ok[list(errors)] = False
                return DecodedImages(images, ok, errors, folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"images.{os.getpid()}.npy.part"
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
    else:
        images = np.empty((n, 3, s, s), dtype=np.uint8)
    if num_workers is None:
        num_workers = default_workers("cache", n)
    loader = DataLoader(DecodingDataset(dataset, pre), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_decoded, persistent_workers=False,
                        worker_init_fn=loader_worker_init if num_workers else None)
    errors: dict[int, str] = {}
    from galaxymorph.progress import track

    for idx, batch, errs in track(loader, total=len(loader), description="decoding images",
                                  enabled=progress):
        images[idx.numpy()] = batch.numpy()
        for i, e in zip(idx.tolist(), errs, strict=True):
            if e:
                errors[i] = e
    ok = np.ones(n, dtype=bool)
    ok[list(errors)] = False
    if folder is not None:
        images.flush()
        del images
        os.replace(tmp, folder / "images.npy")
        write_json(folder / "meta.json", {"n": n, "preprocessing": pre.to_dict(),
                                          "spec": dataset.spec, "errors": errors})
        images = np.load(folder / "images.npy", mmap_mode="r")
    return DecodedImages(images, ok, errors, folder)


def decoded_root() -> Path:
    """Where decode caches live: ``$GALAXYMORPH_HOME/cache/decoded``, one folder per key."""
    return paths.cache_dir() / "decoded"


_PART = re.compile(r"images\.(\d+)\.npy\.part$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(root: Path) -> list[Path]:
    """Delete ``images.<pid>.npy.part`` files whose builder is gone (killed mid-build); a
    part file of a live process, here or in a concurrent run, is left alone."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for part in root.glob("*/images.*.npy.part"):
        m = _PART.match(part.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                part.unlink()
                removed.append(part)
            except OSError:
                continue
    return removed


@dataclass
class CacheEntry:
    """One decode cache on disk."""

    key: str
    path: Path
    bytes: int
    images: int | None  # None: not finished (a build in progress, or killed)
    spec: str
    preprocessing: dict
    modified: float


def list_caches(root: Path | None = None) -> list[CacheEntry]:
    """Every decode cache under ``root`` (default :func:`decoded_root`), largest first."""
    root = decoded_root() if root is None else Path(root)
    entries = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        files = [f for f in folder.iterdir() if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        meta: dict = {}
        try:
            raw = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            meta = raw if isinstance(raw, dict) else {}
        except (OSError, ValueError):
            pass
        n = meta.get("n") if isinstance(meta.get("n"), int) else None
        pre = meta.get("preprocessing") if isinstance(meta.get("preprocessing"), dict) else {}
        mtime = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
        entries.append(CacheEntry(folder.name, folder, size, n, str(meta.get("spec", "?")), pre, mtime))
    return sorted(entries, key=lambda e: -e.bytes)


def clear_caches(root: Path | None = None, keys: list[str] | None = None,
                 older_than_days: float | None = None) -> list[CacheEntry]:
    """Delete decode caches (all, those named by ``keys``, or those unused for a while) and any
    stale part files; returns what was deleted. A cache is rebuilt when next needed."""
    root = decoded_root() if root is None else Path(root)
    remove_stale_parts(root)
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    chosen = [e for e in list_caches(root)
              if (keys is None or e.key in keys) and (cutoff is None or e.modified < cutoff)]
    for e in chosen:
        shutil.rmtree(e.path, ignore_errors=True)
    return chosen


class ImageTensorDataset(Dataset):
    """Training/eval view over decoded images: returns ``(uint8 (3,S,S), label)``; with 2-D
    ``labels`` (decision-tree targets) the label is that row, as a float tensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, positions: np.ndarray,
                 augment=None):
        self.images, self.labels, self.positions, self.augment = images, labels, positions, augment

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int):
        i = int(self.positions[j])
        x = torch.from_numpy(np.array(self.images[i]))
        # A class index, or a row of decision-tree targets (fractions + question weights).
        y = int(self.labels[i]) if self.labels.ndim == 1 else torch.from_numpy(self.labels[i])
        if self.augment is not None:
            x, y = self.augment(x, y)
        return x, y
