"""The odd ones first: every image of an index ranked by how unlike the rest it is.

Two scores, measured against each other by ``benchmarks/bench_similarity.py`` (average
precision of rings and of mergers among ordinary galaxies, docs/similarity.md):

- ``knn``: the distance (``1 - cosine``) to the image's ``k``-th nearest neighbour in the
  index, itself left out. A galaxy with few look-alikes is far from its ``k``-th.
- ``gmm``: a density model, the negative log-likelihood under a Gaussian mixture fitted to the
  embeddings reduced by PCA (fitted on a sample; every image scored).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.errors import ConfigError
from galaxymorph.search import ann
from galaxymorph.search.index import SimilarityIndex, column_kinds, write_rows

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

METHODS = ("knn", "gmm")
DEFAULT_METHOD = "knn"
DEFAULT_K = 10
#: The density model: PCA dimensions, mixture components, and the sample both are fitted on.
GMM_DIMS, GMM_COMPONENTS, GMM_SAMPLE = 32, 8, 50_000
#: Queries per FAISS call when each image looks for its own neighbours.
CHUNK = 4096


def odd_scores(ix: SimilarityIndex, method: str = DEFAULT_METHOD, k: int = DEFAULT_K,
               seed: int = 0) -> np.ndarray:
    """One score per id of ``ix`` (higher: odder)."""
    _check(method, k, ix.meta.count)
    if method == "knn":
        return knn_scores(ix.index, ix.vectors(), k, ix.meta.count)
    return gmm_scores(np.concatenate(list(ix.vectors())), seed=seed)


def score_vectors(vectors: np.ndarray, method: str = DEFAULT_METHOD, k: int = DEFAULT_K,
                  seed: int = 0) -> np.ndarray:
    """:func:`odd_scores` of unit vectors held in memory (neighbours by exact search)."""
    _check(method, k, len(vectors))
    if method == "gmm":
        return gmm_scores(vectors, seed=seed)
    index = ann.new_index("flat", vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return knn_scores(index, [vectors], k, len(vectors))


def _check(method: str, k: int, count: int) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown oddity method '{method}'; use one of {', '.join(METHODS)}")
    if count < 2:
        raise ConfigError(f"ranking needs at least 2 images in the index, it has {count}")
    if method == "knn" and not 1 <= k < count:
        raise ConfigError(f"k must be within 1..{count - 1} for this index, got {k}")


def knn_scores(index: Any, chunks: Iterable[np.ndarray], k: int, count: int) -> np.ndarray:
    """Distance to the ``k``-th neighbour in ``index`` of each of its own vectors (``chunks``,
    in id order), each left out of its own neighbours."""
    out = np.empty(count)
    start = 0
    for vectors in chunks:
        for lo in range(0, len(vectors), CHUNK):
            part = vectors[lo:lo + CHUNK]
            ids = np.arange(start, start + len(part), dtype=np.int64)
            _, dist = ann.search(index, part, k, exclude=ids)
            out[start:start + len(part)] = dist[:, k - 1]
            start += len(part)
    return out


def gmm_scores(vectors: np.ndarray, seed: int = 0, dims: int = GMM_DIMS,
               components: int = GMM_COMPONENTS, sample: int = GMM_SAMPLE) -> np.ndarray:
    """Negative log-likelihood of each vector under a Gaussian mixture in PCA space."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    n = len(vectors)
    fit = vectors[rng.choice(n, size=min(n, sample), replace=False)]
    dims = max(1, min(dims, fit.shape[1], len(fit) - 1))
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(fit)
    reduced = pca.transform(fit)
    components = max(1, min(components, len(fit) // (10 * dims) or 1))
    gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-4,
                          random_state=seed).fit(reduced)
    return -np.concatenate([gmm.score_samples(pca.transform(vectors[lo:lo + 65536]))
                            for lo in range(0, n, 65536)])


def rank_odd(index: str | Path | SimilarityIndex, out: str | Path | None = None,
             method: str = DEFAULT_METHOD, k: int = DEFAULT_K) -> pd.DataFrame | dict[str, Any]:
    """Every image of ``index``, oddest first: ``rank``, ``path``, ``score`` (higher: odder),
    then its catalog columns. ``out``: CSV, JSON or Parquet (None: a DataFrame)."""
    if out is not None:
        from galaxymorph.inference.writers import output_format

        output_format(out)
    ix = index if isinstance(index, SimilarityIndex) else SimilarityIndex.open(index)
    scores = odd_scores(ix, method, k)
    order = np.argsort(-scores, kind="stable")
    extra = ix.columns()
    table = ix.table.iloc[order].reset_index(drop=True)
    table["rank"] = np.arange(1, len(order) + 1)
    table["score"] = scores[order]
    columns = ["rank", "path", "score", *extra]
    if out is None:
        return table[columns]
    write_rows(out, table[columns].astype(object).to_dict("records"), columns,
               {**column_kinds(ix.table), "rank": "int", "score": "float"})
    return {"images": len(order), "method": method, "k": k, "out": str(out)}
