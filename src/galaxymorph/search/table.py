"""Reading an embedding file (``galaxymorph embed``'s Parquet) as untrusted data, in chunks.

A survey's file holds millions of 1,280-number rows, so the vectors are read one row group at a
time and only the readable rows (``error`` empty) are kept: the ``i``-th of those is id ``i``
of the index built from the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.errors import DataError
from galaxymorph.inference.embed import EMBEDDING, read_metadata
from galaxymorph.models.onnx_graph import first_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class EmbeddingFile:
    """An opened embedding file: its rows, columns and the model it records."""

    path: Path
    rows: int
    columns: list[str]
    model_hash: str
    dim: int
    model: dict[str, Any]
    _file: Any = None

    @classmethod
    def open(cls, path: str | Path) -> EmbeddingFile:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise DataError("the embedding file is missing", path)
        try:
            pf = pq.ParquetFile(str(path))
            schema = pf.schema_arrow
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a damaged file
            raise DataError(f"not a readable Parquet file ({first_line(exc)})", path) from exc
        meta = read_metadata(schema.metadata)
        if meta is None:
            raise DataError("not an embedding file of galaxymorph embed (no model, hash and "
                            "dimension in its metadata)", path)
        names = list(schema.names)
        for column, kind in (("path", pa.string()), ("error", pa.string())):
            if column not in names or schema.field(column).type != kind:
                raise DataError(f"an embedding file needs a text column '{column}'", path)
        if EMBEDDING not in names or not _is_float_list(schema.field(EMBEDDING).type):
            raise DataError(f"an embedding file needs a column '{EMBEDDING}' of float lists", path)
        return cls(path, pf.metadata.num_rows, names, meta["hash"], meta["dim"], meta["model"], pf)

    def _groups(self, columns: list[str]) -> Iterator[Any]:
        try:
            for g in range(self._file.num_row_groups):
                yield self._file.read_row_group(g, columns=columns)
        except DataError:
            raise
        except Exception as exc:  # a damaged page
            raise DataError(f"not a readable embedding file ({first_line(exc)})", self.path) from exc

    def kinds(self) -> dict[str, str]:
        """Each column's value kind, in file order (what rows appended to it must have)."""
        import pyarrow as pa

        schema = self._file.schema_arrow
        out = {}
        for name in self.columns:
            t = schema.field(name).type
            out[name] = ("int" if pa.types.is_integer(t) else "float" if pa.types.is_floating(t)
                         else "bool" if pa.types.is_boolean(t) else "vector" if _is_float_list(t)
                         else "str")
        return out

    def count(self) -> int:
        """How many rows are readable (have an embedding): the index's size."""
        import pyarrow.compute as pc

        return sum(int(pc.sum(_ok(t)).as_py() or 0) for t in self._groups(["error"]))

    def vectors(self) -> Iterator[np.ndarray]:
        """The readable rows' embeddings, float32 ``(n, dim)`` per row group, checked."""
        for table in self._groups([EMBEDDING, "error"]):
            column = table.filter(_ok(table)).column(EMBEDDING).combine_chunks()
            if column.null_count:
                raise DataError("a row without an error has no embedding", self.path)
            flat = column.flatten().to_numpy(zero_copy_only=False)
            yield unit_rows_checked(flat, self.dim, len(column), self.path)

    def table(self) -> pd.DataFrame:
        """Every column but the embedding, for the readable rows (row ``i``: id ``i``)."""
        import pyarrow as pa

        columns = [c for c in self.columns if c != EMBEDDING]
        parts = [t.filter(_ok(t)) for t in self._groups(columns)]
        if not parts:
            import pandas as pd

            return pd.DataFrame(columns=columns)
        return pa.concat_tables(parts).to_pandas().reset_index(drop=True)


def _ok(table: Any) -> Any:
    import pyarrow.compute as pc

    error = table.column("error")
    return pc.or_(pc.is_null(error), pc.equal(error, ""))


def _is_float_list(kind: Any) -> bool:
    import pyarrow as pa

    return ((pa.types.is_list(kind) or pa.types.is_large_list(kind)
             or pa.types.is_fixed_size_list(kind)) and pa.types.is_floating(kind.value_type))


def unit_rows_checked(flat: np.ndarray, dim: int, n: int, where: Path) -> np.ndarray:
    """``n`` rows of ``dim`` float32 numbers, all finite; else a clear error."""
    if flat.size != n * dim:
        raise DataError(f"an embedding is not {dim} numbers long", where)
    out = np.ascontiguousarray(flat, dtype=np.float32).reshape(n, dim)
    if not np.isfinite(out).all():
        raise DataError("an embedding holds a NaN or infinite value", where)
    return out
