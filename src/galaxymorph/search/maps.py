"""A 2-D map of an index: UMAP of the embeddings, coloured by class, beside a grid of thumbnails.

The scatter shows where the classes lie; the thumbnails (the galaxy nearest the centre of each
cell of a grid laid over the map, as the model saw it) show what the representation has learned
to put together, the picture astronomers read a representation with (e.g. Stein et al. 2021,
Walmsley et al. 2023). A very large index is mapped on a random sample of it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.errors import ConfigError, ImageReadError
from galaxymorph.search.index import SimilarityIndex

PROJECTIONS = ("umap", "pca")
DEFAULT_MAX_POINTS = 20_000
DEFAULT_GRID = 12


def project(vectors: np.ndarray, projection: str = "umap", seed: int = 0) -> np.ndarray:
    """2-D coordinates of unit vectors: UMAP (``umap-learn``) or the first two principal axes."""
    if projection not in PROJECTIONS:
        raise ConfigError(f"unknown projection '{projection}'; use one of {', '.join(PROJECTIONS)}")
    if len(vectors) < 3:
        raise ConfigError(f"a map needs at least 3 images, the index has {len(vectors)}")
    if projection == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    try:
        import umap
    except ImportError as exc:
        raise ConfigError("the map needs umap-learn, which is not installed",
                          hint="pip install umap-learn (or use --projection pca)") from exc
    reducer = umap.UMAP(n_neighbors=min(15, len(vectors) - 1), min_dist=0.1, random_state=seed,
                        init="spectral" if len(vectors) > 10 else "random", n_jobs=1)
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": chosen
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float64)


def sample_ids(count: int, max_points: int, seed: int = 0) -> np.ndarray:
    if count <= max_points:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=max_points, replace=False))


def grid_picks(xy: np.ndarray, grid: int) -> list[tuple[int, tuple[float, float, float, float]]]:
    """For each cell of a ``grid`` x ``grid`` grid over the points that holds any, the point
    nearest its centre, with the cell's extent ``(x0, x1, y0, y1)``."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    size = np.where(hi > lo, (hi - lo) / grid, 1.0)
    cell = np.minimum(((xy - lo) / size).astype(int), grid - 1)
    picks = []
    for cx in range(grid):
        for cy in range(grid):
            inside = np.flatnonzero((cell[:, 0] == cx) & (cell[:, 1] == cy))
            if not len(inside):
                continue
            centre = lo + size * (np.array([cx, cy]) + 0.5)
            best = inside[np.argmin(((xy[inside] - centre) ** 2).sum(axis=1))]
            x0, y0 = lo + size * np.array([cx, cy])
            picks.append((int(best), (float(x0), float(x0 + size[0]), float(y0), float(y0 + size[1]))))
    return picks


def draw_map(index: str | Path | SimilarityIndex, out: str | Path, color_by: str | None = None,
             projection: str = "umap", max_points: int = DEFAULT_MAX_POINTS,
             grid: int = DEFAULT_GRID, seed: int = 0, coords: str | Path | None = None) -> dict[str, Any]:
    """Draw the map of ``index`` to ``out`` (PNG); ``color_by``: a column of the index's rows
    (default: the catalog's ``label_name``, else the model's ``predicted_class``); ``coords``:
    also write the map's coordinates (CSV, JSON or Parquet)."""
    if Path(out).suffix.lower() != ".png":
        raise ConfigError("the map is a PNG image: use a .png file", out)
    if not 1 <= grid <= 64 or max_points < 3:
        raise ConfigError(f"--grid must be within 1..64 and --max-points at least 3, got "
                          f"{grid} and {max_points}")
    ix = index if isinstance(index, SimilarityIndex) else SimilarityIndex.open(index)
    column = color_by or ix.label_column or "predicted_class"
    if column not in ix.table.columns:
        raise ConfigError(f"the index has no column '{column}' (it has: "
                          f"{', '.join(ix.table.columns)})")
    ids = sample_ids(ix.meta.count, max_points, seed)
    vectors = _gather(ix, ids)
    xy = project(vectors, projection, seed)
    classes = ix.table[column].iloc[ids].fillna("(none)").astype(str).to_numpy()
    picks, missing = [], 0
    for i, extent in grid_picks(xy, grid):
        try:
            picks.append((ix.thumbnail(int(ids[i])), extent))
        except ImageReadError:
            missing += 1  # moved or deleted since the index was built: an empty cell
    _plot(xy, classes, column, picks, out, f"{ix.meta.model['name'] or ix.meta.model['ref']}: "
          f"{len(ids)} of {ix.meta.count} images, {projection.upper()}")
    if coords is not None:
        from galaxymorph.search.index import column_kinds, write_rows

        table = ix.table.iloc[ids].reset_index(drop=True)
        table["x"], table["y"] = xy[:, 0], xy[:, 1]
        write_rows(coords, table.astype(object).to_dict("records"), list(table.columns),
                   {**column_kinds(table), "x": "float", "y": "float"})
    return {"points": len(ids), "thumbnails": len(picks), "unreadable": missing,
            "colour": column, "out": str(out)}


def _gather(ix: SimilarityIndex, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (sorted), read chunk by chunk."""
    parts, seen = [], 0
    for vectors in ix.vectors():
        inside = ids[(ids >= seen) & (ids < seen + len(vectors))] - seen
        parts.append(vectors[inside])
        seen += len(vectors)
    return np.concatenate(parts) if parts else np.zeros((0, ix.meta.dim), np.float32)


def _plot(xy: np.ndarray, classes: np.ndarray, column: str, picks: list, out: str | Path,
          title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from galaxymorph.io_utils import atomic_path

    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 8), constrained_layout=True)
    names = sorted(set(classes))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    size = max(1.0, min(12.0, 4000 / len(xy)))
    for n, name in enumerate(names):
        on = classes == name
        left.scatter(xy[on, 0], xy[on, 1], s=size, color=cmap(n % cmap.N), label=f"{name} ({on.sum()})",
                     alpha=0.7, linewidths=0)
    left.legend(title=column, markerscale=max(1.0, 6 / size), loc="best", fontsize=8)
    left.set_title(title)
    right.set_facecolor("black")
    for image, (x0, x1, y0, y1) in picks:
        right.imshow(image, extent=(x0, x1, y0, y1), origin="upper", interpolation="lanczos")
    lo, hi = xy.min(axis=0), xy.max(axis=0) + 1e-9
    pad = 0.03 * (hi - lo)
    left.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    left.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    right.set_xlim(lo[0], hi[0])
    right.set_ylim(lo[1], hi[1])
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    right.set_aspect("auto")
    right.set_title(f"the galaxy nearest each cell's centre ({len(picks)} cells)")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
