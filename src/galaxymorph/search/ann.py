"""Nearest neighbours of L2-normalised embeddings with FAISS: exact below a size, approximate above.

Embeddings are unit vectors, so the index ranks by inner product (cosine similarity) and the
distance reported is ``1 - cosine``. Two kinds:

- ``flat``: an exact scan (``IndexFlatIP``). A query reads every vector, ``4 D`` bytes each
  (5 kB at MobileNetV2's 1,280 dimensions), so its time and the memory grow with the set.
- ``ivf``: an inverted-file index whose vectors are stored as 8-bit scalar codes
  (``IndexIVFScalarQuantizer``, ``D`` bytes each: 1.3 GB for a million 1,280-d vectors); a
  query scans the ``nprobe`` lists nearest to it. It needs training (k-means on a sample).

:data:`APPROX_FROM` is where the index turns approximate, from the measurements of
``benchmarks/bench_similarity.py`` (docs/similarity.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from galaxymorph.errors import ConfigError

KINDS = ("flat", "ivf")
#: Sets of at least this many vectors get the approximate index. A flat query's time grows with
#: the set (memory-bound: about 4 ms per 10,000 1,280-d vectors on one core, see
#: docs/similarity.md), past the 5 ms budget here; an IVF index needs a few thousand vectors
#: to train its lists anyway.
APPROX_FROM = 20_000
#: Training vectors per inverted list (FAISS warns below 39).
TRAIN_PER_LIST = 64
#: Lists scanned per query, as a share of all lists (at least :data:`MIN_NPROBE`).
NPROBE_SHARE = 1 / 32
MIN_NPROBE = 16


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError("similarity search needs FAISS, which is not installed",
                          hint="pip install faiss-cpu") from exc
    return faiss


def choose_kind(n: int) -> str:
    return "flat" if n < APPROX_FROM else "ivf"


def ivf_params(n: int) -> dict[str, int]:
    """Lists about ``4 sqrt(n)`` (a power of two), scanning :data:`NPROBE_SHARE` of them."""
    nlist = 2 ** round(math.log2(max(64.0, 4 * math.sqrt(max(n, 1)))))
    nlist = max(16, min(nlist, 65536, n // TRAIN_PER_LIST or 16))
    nprobe = max(MIN_NPROBE, round(nlist * NPROBE_SHARE))
    return {"nlist": int(nlist), "nprobe": int(min(nprobe, nlist))}


def new_index(kind: str, dim: int, params: dict[str, int] | None = None) -> Any:
    """An empty index of ``kind`` for ``dim``-dimensional unit vectors (inner product)."""
    faiss = import_faiss()
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "ivf":
        assert params is not None
        quantizer = faiss.IndexFlatIP(dim)
        # FAISS's Python wrapper keeps the quantizer alive as long as the index.
        return faiss.IndexIVFScalarQuantizer(quantizer, dim, int(params["nlist"]),
                                             faiss.ScalarQuantizer.QT_8bit,
                                             faiss.METRIC_INNER_PRODUCT)
    raise ConfigError(f"unknown index kind '{kind}'; use one of {', '.join(KINDS)}")


def train(index: Any, sample: np.ndarray, seed: int = 0) -> None:
    """Train an IVF index's lists (and codes) on ``sample``; a flat index needs none."""
    if index.is_trained:
        return
    index.cp.seed = seed  # k-means: one result per sample
    index.train(np.ascontiguousarray(sample, dtype=np.float32))


def configure(index: Any, params: dict[str, int]) -> Any:
    """Set query-time parameters (an IVF index's ``nprobe``)."""
    if "nprobe" in params and hasattr(index, "nprobe"):
        index.nprobe = int(params["nprobe"])
    return index


def search(index: Any, queries: np.ndarray, k: int,
           exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ids and their distances (``1 - cosine``) per query, nearest first.

    ``exclude[i]``: an id query ``i`` must not get back (itself, when it is in the index), or
    ``-1``. Missing neighbours (fewer than ``k`` vectors) are id ``-1``, distance NaN.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(queries)
    extra = 1 if exclude is not None and (exclude >= 0).any() else 0
    if n == 0 or index.ntotal == 0:
        return np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan)
    sims, ids = index.search(queries, min(k + extra, index.ntotal))
    if extra:
        keep = ids != exclude[:, None]
        # Each row keeps its first k ids that are not excluded (order preserved).
        order = np.argsort(~keep, axis=1, kind="stable")
        ids = np.take_along_axis(ids, order, axis=1)
        sims = np.take_along_axis(sims, order, axis=1)
        ids[~np.take_along_axis(keep, order, axis=1)] = -1
    ids, sims = ids[:, :k], sims[:, :k]
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=np.nan)
    dist = np.where(ids >= 0, 1.0 - sims.astype(np.float64), np.nan)
    return ids.astype(np.int64), dist


def memory_bytes(index: Any) -> int:
    """The index's size as FAISS serialises it: what it holds in memory, within a few kB."""
    faiss = import_faiss()
    return int(faiss.serialize_index(index).size)
