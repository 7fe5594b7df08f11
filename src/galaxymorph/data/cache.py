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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from galaxymorph import paths
from galaxymorph.data.dataset import GalaxyDataset
from galaxymorph.data.transforms import Preprocessing, prepare
from galaxymorph.errors import ImageReadError
from galaxymorph.io_utils import write_json
from galaxymorph.runtime import default_workers


@dataclass
class DecodedImages:
    """``images[i]`` is ``dataset`` image ``i`` as (3, S, S) uint8; ``ok[i]`` False if unreadable."""

    images: np.ndarray  # (N, 3, S, S) uint8, memory-mapped
    ok: np.ndarray  # (N,) bool
    errors: dict[int, str]
    path: Path | None = None


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
        folder = Path(cache) if isinstance(cache, (str, Path)) else paths.cache_dir() / "decoded"
        folder = folder / cache_key(dataset, pre)
        meta_path = folder / "meta.json"
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
                        collate_fn=collate_decoded, persistent_workers=False)
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


class ImageTensorDataset(Dataset):
    """Training/eval view over decoded images: returns ``(uint8 (3,S,S), label)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, positions: np.ndarray,
                 augment=None):
        self.images, self.labels, self.positions, self.augment = images, labels, positions, augment

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int):
        i = int(self.positions[j])
        x = torch.from_numpy(np.array(self.images[i]))
        y = int(self.labels[i])
        if self.augment is not None:
            x, y = self.augment(x, y)
        return x, y
