"""Streaming result writers: CSV, JSON (array or JSON Lines) and Parquet.

Rows are written batch by batch as predictions arrive, so memory does not grow with the number
of images. CSV and JSON Lines are appended and flushed after every batch; the JSON array is
re-closed (``]``) after every batch. Either way a crash leaves a valid file holding the rows
written so far, which ``--resume`` continues. Parquet keeps each batch as a complete part file
until it is closed (see :class:`ParquetWriter`), so even a ``kill -9`` loses no finished batch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
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


#: a detector's columns (``--detector``): its one calibrated score, the verdict at its
#: threshold ("real"/"synthetic") and the parts that flagged the image (comma-separated), then
#: the parts: the network's p(synthetic), the statistics head's, and the fake-free atypicality
#: (0.5 an ordinary real galaxy, near 1 unlike every real training image; NaN when the
#: detector has no such part)
DETECTOR_COLUMNS = ("synthetic_score", "verdict", "flagged_by", "p_network", "p_statistics",
                    "atypicality")
#: the detector's columns that hold text (None where an image could not be read)
DETECTOR_TEXT_COLUMNS = ("verdict", "flagged_by")


def missing_detector_values() -> dict[str, Any]:
    """A detector's columns for an image that could not be scored."""
    return {c: None if c in DETECTOR_TEXT_COLUMNS else math.nan for c in DETECTOR_COLUMNS}


def columns_for(class_names: list[str], detector: bool = False,
                votes: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The output columns, in order (one ``prob_<class>`` per class, then a decision-tree
    model's ``votes`` columns). ``uncertain``: the top probability is below the model's
    abstention threshold (``label`` is still the argmax)."""
    cols = ["path", "label", "label_name", "probability", "uncertain",
            *[prob_column(c) for c in class_names], *votes]
    if detector:
        cols += DETECTOR_COLUMNS
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
            _check_columns(path, _first_json_row(path, array=False), columns)
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
            _check_columns(path, _first_json_row(path, array=True), columns)
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


def parquet_parts(path: Path) -> Path:
    """Where a Parquet output keeps its batches until it is closed: ``.NAME.parts/`` beside it."""
    return path.with_name(f".{path.name}.parts")


class ParquetWriter(Writer):
    """Each batch is a complete small Parquet file in :func:`parquet_parts`, written atomically;
    :meth:`close` joins them (one row group per batch) into the output and removes them.

    A Parquet file is readable only once its footer is written, at the end, so a ``kill -9``
    would lose a single growing file. The parts survive it: ``--resume`` reads them and carries
    on, and ``pandas.read_parquet`` reads the folder as it is. Appending keeps the old output
    intact until the joined file replaces it.
    """

    def __init__(self, path: Path, columns: list[str], append: bool = False,
                 kinds: dict[str, str] | None = None, metadata: dict[str, str] | None = None):
        super().__init__(path, columns)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("Parquet output needs pyarrow: pip install pyarrow", path) from exc
        self._pa, self._pq = pa, pq
        arrow = {"str": pa.string(), "int": pa.int64(), "bool": pa.bool_(), "float": pa.float64(),
                 "vector": pa.list_(pa.float32())}
        self.schema = pa.schema([pa.field(c, arrow[_kind_of(c, kinds)]) for c in columns],
                                metadata=metadata or None)
        self._final = path
        self._parts = parquet_parts(path)
        self._append = append
        if append:
            for f in ([path] if path.exists() else []) + _part_files(self._parts):
                schema = _open_parquet(f).schema_arrow
                _check_columns(f, schema.names, columns)
                _check_metadata(f, schema.metadata or {}, metadata or {})
        elif self._parts.exists():
            shutil.rmtree(self._parts)
        self._parts.mkdir(parents=True, exist_ok=True)
        self._next = len(_part_files(self._parts))
        self._closed = False

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        data = {c: [_parquet_value(r.get(c), c) for r in rows] for c in self.columns}
        part = self._parts / f"{self._next:08d}.parquet"
        tmp = part.with_suffix(".tmp")
        self._pq.write_table(self._pa.table(data, schema=self.schema), str(tmp))
        os.replace(tmp, part)  # a part is complete or absent
        self._next += 1
        self.rows_written += len(rows)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        sources = ([self._final] if self._append and self._final.exists() else [])
        sources += _part_files(self._parts)
        from galaxymorph.io_utils import atomic_path

        with atomic_path(self._final) as tmp:
            writer = self._pq.ParquetWriter(str(tmp), self.schema)
            try:
                for f in sources:
                    pf = _open_parquet(f)
                    for g in range(pf.num_row_groups):
                        writer.write_table(pf.read_row_group(g).cast(self.schema))
            finally:
                writer.close()
        shutil.rmtree(self._parts, ignore_errors=True)


def _check_metadata(path: Path, found: dict[bytes, bytes], wanted: dict[str, str]) -> None:
    """Appending keeps the file's key-value metadata: an embedding file's model, for one."""
    for key, value in wanted.items():
        old = found.get(key.encode())
        if old is not None and old.decode(errors="replace") != value:
            raise DataError(f"cannot append: its {key} is {old.decode(errors='replace')[:80]!r}, "
                            f"this run's {value[:80]!r}; choose another --out", path)
        if old is None:
            raise DataError(f"cannot append: it has no {key} (not written by this command?); "
                            "choose another --out", path)


def _kind_of(column: str, kinds: dict[str, str] | None) -> str:
    """A column's value kind: given for the source's columns (``kinds``), else from its name."""
    if kinds and column in kinds:
        return kinds[column]
    if column in ("path", "label_name", "error") or column in DETECTOR_TEXT_COLUMNS:
        return "str"
    return {"label": "int", "uncertain": "bool"}.get(column, "float")


def _part_files(parts: Path) -> list[Path]:
    return sorted(parts.glob("*.parquet")) if parts.is_dir() else []


def output_exists(out: str | Path) -> bool:
    """Whether ``out`` already holds results: the file, or the parts an interrupted Parquet
    run left (overwriting those silently would throw finished predictions away)."""
    path = Path(out)
    return path.exists() or (output_format(path) == "parquet" and bool(_part_files(parquet_parts(path))))


def open_writer(out: str | Path | None, columns: list[str], append: bool = False,
                kinds: dict[str, str] | None = None, metadata: dict[str, str] | None = None) -> Writer:
    """A writer for ``out`` (format from the suffix); ``None`` writes CSV to standard output.
    ``kinds``: value kinds (int, float, bool, str, vector) of columns not named by the prediction
    (the source's columns), for typed formats. ``metadata``: key-value pairs a Parquet file
    keeps in its schema (refused: any other format)."""
    if metadata and (out is None or output_format(out) != "parquet"):
        raise ConfigError("only a Parquet output keeps this run's metadata; use a .parquet file",
                          out)
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
    return ParquetWriter(path, columns, append=append, kinds=kinds, metadata=metadata)


def done_paths(out: str | Path) -> set[str]:
    """The ``path`` column of an earlier output (what ``--resume`` skips), normalised like the
    keys of :class:`~galaxymorph.inference.sources.InputPlan`; empty if absent."""
    from galaxymorph.inference.sources import normalise_key

    path = Path(out)
    if output_format(path) != "parquet" and (not path.exists() or path.stat().st_size == 0):
        return set()
    return {normalise_key(p) for p in iter_done_paths(path)}


def iter_done_paths(path: Path) -> Iterator[str]:
    fmt = output_format(path)
    try:
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(_terminated_lines(fh))
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
            for f in ([path] if path.exists() else []) + _part_files(parquet_parts(path)):
                table = _open_parquet(f)
                for g in range(table.num_row_groups):
                    yield from table.read_row_group(g, columns=["path"]).column("path").to_pylist()
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot resume: not readable as {fmt} ({exc})", path) from exc


def _terminated_lines(fh: IO[str]) -> Iterator[str]:
    """The lines of ``fh`` that end with a newline. A crash mid-row leaves an unterminated last
    line that may already hold the path: it must not count as done, since appending cuts it
    (:func:`_ensure_trailing_newline`) and its image is predicted again."""
    for line in fh:
        if line.endswith("\n"):
            yield line


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a file without a footer
        raise DataError(f"not a readable Parquet file ({exc})", path) from exc


def _check_header(path: Path, columns: list[str]) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    _check_columns(path, header, columns)


def _check_columns(path: Path, found: list[str] | None, columns: list[str]) -> None:
    """Appending keeps one schema: the old rows' columns must be this run's (``None``: no row
    yet, nothing to keep)."""
    if found is not None and found != columns:
        raise DataError(f"cannot append: its columns {found} differ from this run's {columns} "
                        "(another model, detector, or inputs with other catalog columns?); "
                        "choose another --out", path)


#: How much of a JSON output is read to find its first row's columns.
_HEAD_BYTES = 1 << 20


def _first_json_row(path: Path, array: bool) -> list[str] | None:
    """The keys of the first row of a JSON Lines file or a JSON array we wrote (None if none)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(_HEAD_BYTES)
    if array:
        head = head.lstrip()
        if not head.startswith("["):
            return None  # not ours: the writer says so with its own message
        head = head[1:]
    head = head.lstrip()
    if not head or head.startswith("]"):
        return None
    try:
        row, _ = json.JSONDecoder().raw_decode(head)
    except ValueError:
        return None  # a first row cut by a crash: it is predicted again
    return list(row) if isinstance(row, dict) else None


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
