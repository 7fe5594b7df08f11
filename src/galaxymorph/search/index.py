"""An opened index folder, and ``similar``: the nearest galaxies of query images.

``SimilarityIndex.open(DIR)`` checks the whole folder (:mod:`~galaxymorph.search.store`): the
description, the embedding file against it (same model, dimension and rows) and the FAISS
file. Queries are embedded by ``embed``'s run with the index's own model (another is refused),
so a query that cannot be decoded is a row with its error, never a stopped run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.errors import DataError
from galaxymorph.inference.embed import EMBEDDING
from galaxymorph.search import ann
from galaxymorph.search.store import EMBEDDINGS_FILE, IndexMeta, check_model, read_faiss, read_meta
from galaxymorph.search.table import EmbeddingFile

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: The columns of ``similar``'s rows, before the neighbour's catalog columns.
SIMILAR_COLUMNS = ["query", "rank", "neighbour", "distance"]


@dataclass
class SimilarityIndex:
    """An index folder, checked and loaded: the FAISS index and its rows' columns."""

    folder: Path
    meta: IndexMeta
    index: Any
    table: pd.DataFrame  # row i: id i (path, catalog columns, predicted_class; no embedding)
    _ids: dict[str, int] | None = None

    @classmethod
    def open(cls, folder: str | Path) -> SimilarityIndex:
        folder = Path(folder)
        meta = read_meta(folder)
        source = EmbeddingFile.open(folder / EMBEDDINGS_FILE)
        where = source.path
        if source.model_hash != meta.model_hash or source.dim != meta.dim:
            raise DataError("the embedding file was written by another model than index.json "
                            "names", where, hint="rebuild the index: galaxymorph index build")
        if source.rows != meta.rows:
            raise DataError(f"the embedding file has {source.rows} rows, index.json says "
                            f"{meta.rows} (an interrupted `index add`, or changed since?)", where,
                            hint="run the interrupted `galaxymorph index add` again, or rebuild: "
                                 "galaxymorph index build --resume --out DIR INPUTS...")
        table = source.table()
        if len(table) != meta.count:
            raise DataError(f"the embedding file has {len(table)} readable rows, the index "
                            f"{meta.count}", where, hint="rebuild it: galaxymorph index build")
        return cls(folder, meta, read_faiss(folder, meta), table)

    @property
    def tta(self) -> bool:
        return bool(self.meta.model["record"].get("tta", False))

    @property
    def label_column(self) -> str | None:
        return self.meta.label_column

    def classifier(self, model: str | Path | None = None, device: str = "auto", engine: str = "auto"):
        """The index's model (or ``model``, refused unless its representation is the index's)."""
        from galaxymorph.models.loading import load_classifier

        ref = model if model is not None else self.meta.model["ref"]
        clf = load_classifier(ref, device=device, engine=engine)
        check_model(self.meta, clf, self.folder, ref)
        return clf

    def id_of(self, path: str) -> int:
        """The id of the image at ``path`` (a normalised input key), or -1."""
        if self._ids is None:
            self._ids = {p: i for i, p in enumerate(self.table["path"])}
        return self._ids.get(path, -1)

    def search(self, vectors: np.ndarray, k: int,
               paths: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and distances of the ``k`` nearest neighbours of each vector; a vector whose
        ``path`` is in the index does not get itself back."""
        exclude = np.array([self.id_of(p) for p in paths], dtype=np.int64) if paths else None
        return ann.search(self.index, vectors, k, exclude)

    def vectors(self) -> Any:
        """The stored embeddings, one array per row group, in id order."""
        return EmbeddingFile.open(self.folder / EMBEDDINGS_FILE).vectors()

    def thumbnail(self, i: int) -> np.ndarray:
        """Image ``i`` as the model saw it (its framing and size), ``(S, S, 3)`` uint8; raises
        :class:`~galaxymorph.errors.ImageReadError` when the file cannot be read any more."""
        from galaxymorph.data.transforms import prepare
        from galaxymorph.inference.sources import read_key

        image = read_key(str(self.table["path"].iat[i]))
        return prepare(image, self.preprocessing()).permute(1, 2, 0).numpy()

    def preprocessing(self):
        """The model's preprocessing, from the index's record of it (checked: it is data)."""
        from galaxymorph.data.transforms import Preprocessing
        from galaxymorph.errors import GalaxymorphError

        pre = self.meta.model["record"].get("preprocessing")
        try:
            return Preprocessing(int(pre["image_size"]), float(pre["crop"]), str(pre["framing"]),
                                 float(pre["frame_radii"]))
        except (TypeError, KeyError, ValueError, GalaxymorphError) as exc:
            raise DataError(f"index.json's preprocessing is not usable ({exc})",
                            self.folder / "index.json") from exc

    def columns(self) -> list[str]:
        """The rows' catalog columns (label, label_name, metadata, predicted_class)."""
        return [c for c in self.table.columns if c not in ("path", "error")]


def similar(index: str | Path | SimilarityIndex, queries: str | Path | Iterable[str | Path],
            k: int = 10, out: str | Path | None = None, model: str | Path | None = None,
            batch_size: int = 64, workers: int | None = None, device: str = "auto",
            progress: bool = True) -> pd.DataFrame | dict[str, Any]:
    """The ``k`` nearest galaxies in ``index`` of each query image: one row per (query,
    neighbour) with ``query``, ``rank`` (1..k), ``neighbour`` (its path), ``distance``
    (``1 - cosine``), then the neighbour's catalog columns and ``error`` (a query that could
    not be decoded: one row, no neighbour). ``out``: CSV, JSON or Parquet (None: a DataFrame;
    else a summary dict). A query that is in the index is not its own neighbour.
    """
    from galaxymorph.errors import ConfigError
    from galaxymorph.inference.embed import run_embed
    from galaxymorph.inference.sources import InputPlan

    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if out is not None:
        from galaxymorph.inference.writers import output_format

        output_format(out)  # a bad suffix fails before any work
    start = time.perf_counter()
    ix = index if isinstance(index, SimilarityIndex) else SimilarityIndex.open(index)
    plan = InputPlan(queries)
    clf = ix.classifier(model, device=device)
    embedded = run_embed(plan, clf, model or ix.meta.model["ref"], ix.tta, batch_size=batch_size,
                         workers=workers, progress=progress)
    rows, columns = neighbour_rows(ix, embedded, k)
    if out is None:
        import pandas as pd

        return pd.DataFrame(rows, columns=columns)
    write_rows(out, rows, columns, {**column_kinds(ix.table), "rank": "int"})
    errors = int((embedded["error"] != "").sum())
    return {"queries": len(embedded), "unreadable": errors, "k": k, "out": str(out),
            "seconds": round(time.perf_counter() - start, 2)}


def neighbour_rows(ix: SimilarityIndex, embedded: pd.DataFrame,
                   k: int) -> tuple[list[dict[str, Any]], list[str]]:
    """``similar``'s rows for queries already embedded (``embed``'s DataFrame)."""
    extra = ix.columns()
    columns = [*SIMILAR_COLUMNS, *extra, "error"]
    ok = (embedded["error"] == "").to_numpy()
    paths = embedded["path"].tolist()
    vectors = (np.stack(embedded.loc[ok, EMBEDDING].to_list()) if ok.any()
               else np.zeros((0, ix.meta.dim), np.float32))
    ids, dist = ix.search(vectors, k, [p for p, good in zip(paths, ok, strict=True) if good])
    records = ix.table[extra].astype(object).to_dict("records")  # plain Python values
    rows: list[dict[str, Any]] = []
    j = 0
    for path, good, error in zip(paths, ok, embedded["error"], strict=True):
        if not good:
            rows.append({"query": path, "rank": None, "neighbour": None, "distance": np.nan,
                         "error": error})
            continue
        for rank, (i, d) in enumerate(zip(ids[j], dist[j], strict=True), 1):
            if i < 0:
                break
            rows.append({"query": path, "rank": rank, "neighbour": ix.table["path"].iat[i],
                         "distance": float(d), **records[i], "error": ""})
        j += 1
    return rows, columns


def write_rows(out: str | Path, rows: list[dict[str, Any]], columns: list[str],
               kinds: dict[str, str]) -> None:
    """All rows at once through predict's writers (CSV, JSON, Parquet), atomically: the file
    is complete or absent."""
    from galaxymorph.inference.writers import open_writer
    from galaxymorph.io_utils import atomic_path

    with atomic_path(out) as tmp:
        writer = open_writer(tmp, columns, kinds=kinds)
        try:
            writer.write(rows)
        finally:
            writer.close()


def column_kinds(table: pd.DataFrame) -> dict[str, str]:
    """Value kinds of a table's columns, for typed outputs (every text column a string)."""
    kinds = {}
    for name, dtype in table.dtypes.items():
        kind = getattr(dtype, "kind", "O")
        kinds[str(name)] = {"i": "int", "u": "int", "f": "float", "b": "bool"}.get(kind, "str")
    return {**kinds, "query": "str", "neighbour": "str"}
