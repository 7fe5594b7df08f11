"""Nearest neighbours of L2-normalised embeddings with FAISS: exact below a size, approximate above.

Embeddings are unit vectors, so ranking by inner product (cosine similarity) and by Euclidean
distance agree (``|x - y|^2 = 2 - 2 cos``); the distance reported is ``1 - cosine``. Two kinds:

- ``flat``: an exact scan (``IndexFlatIP``). A query reads every vector, ``4 D`` bytes each
  (5 kB at MobileNetV2's 1,280 dimensions), so its time and the memory grow with the set.
- ``ivf``: an inverted-file index in a PCA projection (``pca`` dimensions, 8-bit codes), whose
  ``k_factor * k`` best candidates are re-ranked on 8-bit codes of the full vectors
  (``IndexRefine``): ``D + pca`` bytes a vector (1.4 GB for a million 1,280-d ones), a query
  scans its ``nprobe`` nearest lists in the small projection and re-ranks a few candidates in
  full. It needs training (PCA, k-means and code ranges on a sample).

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
#: the set (memory-bound: about 2 ms per 10,000 1,280-d vectors on one core, see
#: docs/similarity.md), past the 5 ms budget here; an IVF index needs a few thousand vectors
#: to train its lists anyway.
APPROX_FROM = 20_000
#: Training vectors per inverted list (FAISS warns below 39), at most :data:`MAX_TRAIN` in all
#: (PCA, k-means and codes are trained on one random sample), and k-means iterations.
TRAIN_PER_LIST = 64
MAX_TRAIN = 200_000
KMEANS_ITERATIONS = 10
#: Lists scanned per query, as a share of all lists (at least :data:`MIN_NPROBE`).
NPROBE_SHARE = 1 / 32
MIN_NPROBE = 16
#: Dimensions of the projection the lists live in, and candidates re-ranked per neighbour.
PCA_DIMS = 128
K_FACTOR = 10


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError("similarity search needs FAISS, which is not installed",
                          hint="pip install faiss-cpu") from exc
    return faiss


def choose_kind(n: int) -> str:
    return "flat" if n < APPROX_FROM else "ivf"


def ivf_params(n: int, dim: int) -> dict[str, int]:
    """Lists about ``2 sqrt(n)`` (a power of two: 2,048 for a million; a list is scanned in the
    small projection, so fewer, longer lists cost little), scanning :data:`NPROBE_SHARE` of
    them, in a projection of :data:`PCA_DIMS`."""
    nlist = 2 ** round(math.log2(max(64.0, 2 * math.sqrt(max(n, 1)))))
    nlist = max(16, min(nlist, 65536, n // TRAIN_PER_LIST or 16))
    nprobe = max(MIN_NPROBE, round(nlist * NPROBE_SHARE))
    return {"nlist": int(nlist), "nprobe": int(min(nprobe, nlist)), "pca": min(PCA_DIMS, dim),
            "k_factor": K_FACTOR}


def train_size(n: int, params: dict[str, int]) -> int:
    """How many of ``n`` vectors an IVF index is trained on."""
    return min(n, TRAIN_PER_LIST * int(params["nlist"]), MAX_TRAIN)


def new_index(kind: str, dim: int, params: dict[str, int] | None = None) -> Any:
    """An empty index of ``kind`` for ``dim``-dimensional unit vectors."""
    faiss = import_faiss()
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "ivf":
        assert params is not None
        base = faiss.index_factory(dim, f"PCA{int(params['pca'])},IVF{int(params['nlist'])},SQ8",
                                   faiss.METRIC_L2)
        full = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
        # FAISS's Python wrapper keeps both parts alive as long as the index.
        return configure(faiss.IndexRefine(base, full), params)
    raise ConfigError(f"unknown index kind '{kind}'; use one of {', '.join(KINDS)}")


def train(index: Any, sample: np.ndarray, seed: int = 0) -> None:
    """Train an IVF index (PCA, lists, codes) on ``sample``; a flat index needs none."""
    if index.is_trained:
        return
    ivf = import_faiss().extract_index_ivf(index)
    ivf.cp.seed, ivf.cp.niter = seed, KMEANS_ITERATIONS  # one result per sample
    index.train(np.ascontiguousarray(sample, dtype=np.float32))


def configure(index: Any, params: dict[str, int]) -> Any:
    """Set query-time parameters of an IVF index (``nprobe``, ``k_factor``)."""
    faiss = import_faiss()
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(params["k_factor"])
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
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
    # Inner products for a flat index; squared distances (2 - 2 cos) for an IVF one.
    cosine_distance = sims / 2.0 if index.metric_type == import_faiss().METRIC_L2 else 1.0 - sims
    dist = np.where(ids >= 0, cosine_distance.astype(np.float64), np.nan)
    return ids.astype(np.int64), dist


def memory_bytes(index: Any) -> int:
    """The index's size as FAISS serialises it: what it holds in memory, within a few kB."""
    faiss = import_faiss()
    return int(faiss.serialize_index(index).size)
