"""Streaming result writers: CSV, JSON (array or JSON Lines) and Parquet.

Rows are written batch by batch as predictions arrive, so memory does not grow with the number
of images. CSV and JSON Lines are appended and flushed after every batch; the JSON array is
re-closed (``]``) after every batch. Either way a crash leaves a valid file holding the rows
written so far, which ``--resume`` continues. Parquet writes one row group per batch and is
closed on errors and interrupts; only a hard kill leaves it without its footer.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from galaxymorph.errors import ConfigError, DataError

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"unknown output type '{suffix or '(none)'}'; use .csv, .json, .jsonl or "
                          ".parquet", path)
    return FORMATS[suffix]


def columns_for(class_names: list[str], detector: bool = False) -> list[str]:
    """The output columns, in order (one ``prob_<class>`` per class). ``uncertain``: the top
    probability is below the model's abstention threshold (``label`` is still the argmax)."""
    cols = ["path", "label", "label_name", "probability", "uncertain",
            *[prob_column(c) for c in class_names]]
    if detector:
        cols.append("p_synthetic")
    return [*cols, "error"]


def prob_column(class_name: str) -> str:
    return f"prob_{class_name}"


class Writer:
    """Base: ``write(rows)`` appends a batch of row dicts; ``close()`` finishes the file."""

    def __init__(self, path: Path | None, columns: list[str]):
        self.path, self.columns, self.rows_written = path, columns, 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CSVWriter(Writer):
    def __init__(self, path: Path | None, columns: list[str], append: bool = False,
                 stream: IO[str] | None = None):
        super().__init__(path, columns)
        if stream is not None:
            self._fh, self._own = stream, False
            new = True
        else:
            assert path is not None
            new = not (append and path.exists() and path.stat().st_size > 0)
            if not new:
                _check_header(path, columns)
                _ensure_trailing_newline(path)
            self._fh, self._own = open(path, "w" if new else "a", newline="", encoding="utf-8"), True  # noqa: SIM115 (held across batches)
        self._csv = csv.DictWriter(self._fh, fieldnames=columns, extrasaction="ignore",
                                   lineterminator="\n")
        if new:
            self._csv.writeheader()
            self._fh.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._csv.writerows(_plain(r) for r in rows)
        self._fh.flush()
        self.rows_written += len(rows)

    def close(self) -> None:
        if self._own and not self._fh.closed:
            self._fh.close()


class JSONLinesWriter(Writer):
    def __init__(self, path: Path, columns: list[str], append: bool = False):
        super().__init__(path, columns)
        if append and path.exists():
            _ensure_trailing_newline(path)
        self._fh = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._fh.write("".join(json.dumps(_json_row(r, self.columns)) + "\n" for r in rows))
        self._fh.flush()
        self.rows_written += len(rows)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class JSONArrayWriter(Writer):
    """A JSON array that is closed after every batch: ``[`` rows ``]``, always parseable."""

    _END = b"\n]\n"

    def __init__(self, path: Path, columns: list[str], append: bool = False):
        super().__init__(path, columns)
        if append and path.exists() and path.stat().st_size > 0:
            self._fh = open(path, "r+b")  # noqa: SIM115
            self._fh.seek(0, os.SEEK_END)
            size = self._fh.tell()
            start = max(0, size - 4096)
            self._fh.seek(start)
            tail = self._fh.read()
            close = tail.rfind(b"]")
            if close < 0 or tail[close + 1:].strip():
                raise DataError("cannot append: not a JSON array written by galaxymorph predict "
                                "(it does not end with ']')", path)
            body = tail[:close].rstrip()
            if not body:
                raise DataError("cannot append: not a JSON array written by galaxymorph predict", path)
            self._has_rows = not body.endswith(b"[")
            self._fh.seek(start + len(body))
            self._fh.truncate()
        else:
            self._fh = open(path, "w+b")  # noqa: SIM115
            self._fh.write(b"[")
            self._has_rows = False
        # The file always ends with the closing bracket; each batch overwrites it.
        self._fh.write(self._END)
        self._fh.flush()
        self._fh.seek(-len(self._END), os.SEEK_END)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        text = ",\n".join(json.dumps(_json_row(r, self.columns)) for r in rows)
        lead = b",\n" if self._has_rows else b"\n"
        self._fh.write(lead + text.encode("utf-8") + self._END)
        self._fh.flush()
        # Step back over the closing bracket: the next batch overwrites it.
        self._fh.seek(-len(self._END), os.SEEK_END)
        self._has_rows = True
        self.rows_written += len(rows)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class ParquetWriter(Writer):
    """One row group per batch via :class:`pyarrow.parquet.ParquetWriter`.

    Appending (``--resume``) copies the existing row groups into a new file first, one group at
    a time, and replaces the old file on close; until then the old file stays intact.
    """

    def __init__(self, path: Path, columns: list[str], append: bool = False):
        super().__init__(path, columns)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("Parquet output needs pyarrow: pip install pyarrow", path) from exc
        self._pa = pa
        fields = []
        for c in columns:
            if c in ("path", "label_name", "error"):
                fields.append(pa.field(c, pa.string()))
            elif c == "label":
                fields.append(pa.field(c, pa.int64()))
            elif c == "uncertain":
                fields.append(pa.field(c, pa.bool_()))
            else:
                fields.append(pa.field(c, pa.float64()))
        self.schema = pa.schema(fields)
        self._final = path
        self._tmp: Path | None = None
        target = path
        old = None
        if append and path.exists():
            old = _open_parquet(path)
            if old.schema_arrow.names != columns:
                raise DataError(f"cannot append: its columns {old.schema_arrow.names} differ from "
                                f"this model's {columns}", path)
            self._tmp = target = path.with_name(f".{path.name}.partial")
        self._writer = pq.ParquetWriter(str(target), self.schema)
        if old is not None:
            for g in range(old.num_row_groups):
                self._writer.write_table(old.read_row_group(g).cast(self.schema))

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        data = {c: [_parquet_value(r.get(c), c) for r in rows] for c in self.columns}
        self._writer.write_table(self._pa.table(data, schema=self.schema))
        self.rows_written += len(rows)

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        if self._tmp is not None:
            os.replace(self._tmp, self._final)


def open_writer(out: str | Path | None, columns: list[str], append: bool = False) -> Writer:
    """A writer for ``out`` (format from the suffix); ``None`` writes CSV to standard output."""
    if out is None or str(out) == "-":
        return CSVWriter(None, columns, stream=sys.stdout)
    path = Path(out)
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return CSVWriter(path, columns, append=append)
    if fmt == "jsonl":
        return JSONLinesWriter(path, columns, append=append)
    if fmt == "json":
        return JSONArrayWriter(path, columns, append=append)
    return ParquetWriter(path, columns, append=append)


def done_paths(out: str | Path) -> set[str]:
    """The ``path`` column of an earlier output (what ``--resume`` skips); empty if absent."""
    path = Path(out)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    return set(iter_done_paths(path))


def iter_done_paths(path: Path) -> Iterator[str]:
    fmt = output_format(path)
    try:
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or "path" not in reader.fieldnames:
                    raise DataError("cannot resume: the file has no 'path' column", path)
                for row in reader:
                    if row.get("path"):
                        yield row["path"]
        elif fmt == "jsonl":
            with open(path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)["path"]
                        except (ValueError, KeyError, TypeError):
                            # A line cut by a crash: the last one; its image is predicted again.
                            if fh.readline():
                                raise DataError(f"cannot resume: line {n} is not a JSON row with "
                                                "a 'path'", path) from None
        elif fmt == "json":
            with open(path, encoding="utf-8") as fh:
                rows = json.load(fh)
            if not isinstance(rows, list):
                raise DataError("cannot resume: not a JSON array of rows", path)
            for r in rows:
                yield r["path"]
        else:
            table = _open_parquet(path)
            for g in range(table.num_row_groups):
                yield from table.read_row_group(g, columns=["path"]).column("path").to_pylist()
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot resume: not readable as {fmt} ({exc})", path) from exc


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a file without a footer
        raise DataError(f"not a readable Parquet file ({exc}); a run killed hard leaves one "
                        "without its footer: delete it or choose another --out", path) from exc


def _check_header(path: Path, columns: list[str]) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    if header != columns:
        raise DataError(f"cannot append: its columns {header} differ from this model's {columns} "
                        "(another model or detector?); choose another --out", path)


def _ensure_trailing_newline(path: Path) -> None:
    """A crash mid-line leaves a partial last row; cut it so appended rows start clean."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Find the last newline and truncate after it (its row is predicted again on resume).
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells: missing values empty, floats as repr (round-trips exactly)."""
    out = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[k] = ""
        else:
            out[k] = v
    return out


def _json_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    out = {}
    for c in columns:
        v = row.get(c)
        out[c] = None if isinstance(v, float) and math.isnan(v) else v
    return out


def _parquet_value(v: Any, column: str) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "" if column == "error" else None
    return v
