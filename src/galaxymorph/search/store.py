"""An index folder: the embeddings, their nearest-neighbour index and what built them, together.

``DIR/embeddings.parquet`` is ``galaxymorph embed``'s output (one row per image: path, catalog
columns, embedding, error); ``DIR/index.faiss`` the FAISS index of its readable rows, in file
order (id ``i`` is the ``i``-th row without an error); ``DIR/index.json`` what the index is:
the model (its representation's hash), the dimension, the counts, the index kind and its
parameters, and the index file's size and SHA-256. ``index.json`` is written last, so a folder
without it is an unfinished build.

Everything here is read as untrusted data: ``index.json`` is checked field by field, the
embedding file's schema and model against it, and the FAISS file's size, SHA-256, header and,
once read by FAISS's own reader, its dimension, count and kind; never unpickled. Any problem is
one :class:`~galaxymorph.errors.DataError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from galaxymorph.errors import DataError, ModelError
from galaxymorph.io_utils import atomic_path, file_sha256, read_json_object, write_json
from galaxymorph.models.onnx_graph import first_line
from galaxymorph.search import ann

FORMAT = "galaxymorph-similarity-index"
VERSION = 1
META_FILE, INDEX_FILE, EMBEDDINGS_FILE = "index.json", "index.faiss", "embeddings.parquet"
#: The first bytes FAISS writes for each kind (flat inner product; a refined IVF index).
FOURCC = {"flat": b"IxFI", "ivf": b"IxRF"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class IndexMeta:
    """``index.json``: what an index folder holds and what built it."""

    model: dict[str, Any]  # ref, name, hash (the representation's), record
    dim: int
    count: int  # vectors in the index
    rows: int  # rows of embeddings.parquet (unreadable images included)
    kind: str
    params: dict[str, int] = field(default_factory=dict)
    label_column: str | None = None
    inputs: list[str] = field(default_factory=list)
    index_sha256: str = ""
    index_bytes: int = 0

    @property
    def model_hash(self) -> str:
        return str(self.model["hash"])

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: Path) -> IndexMeta:
        """Checked field by field: a hostile or damaged ``index.json`` is a clear error."""
        def bad(what: str) -> DataError:
            return DataError(f"not a galaxymorph index description: {what}", where)

        if raw.get("format") != FORMAT:
            raise bad(f"'format' is not {FORMAT!r}")
        version = raw.get("version")
        if not _is_int(version) or version < 1:
            raise bad("'version' is not a positive integer")
        if version > VERSION:
            raise DataError(f"written by a newer galaxymorph (index format {version}; this one "
                            f"reads {VERSION})", where, hint="upgrade galaxymorph")
        model = raw.get("model")
        if (not isinstance(model, dict) or not isinstance(model.get("ref"), str)
                or not isinstance(model.get("name"), str) or not isinstance(model.get("record"), dict)
                or not isinstance(model.get("hash"), str) or not _HEX64.fullmatch(model["hash"])):
            raise bad("'model' needs ref, name, record and a 64-hex-digit hash")
        for key, low in (("dim", 1), ("count", 0), ("rows", 0), ("index_bytes", 0)):
            if not _is_int(raw.get(key)) or raw[key] < low:
                raise bad(f"{key!r} is not an integer >= {low}")
        if raw["dim"] > 1 << 16 or raw["rows"] < raw["count"]:
            raise bad("'dim' above 65536, or fewer rows than vectors")
        kind = raw.get("kind")
        if kind not in ann.KINDS:
            raise bad(f"'kind' is not one of {', '.join(ann.KINDS)}")
        params = raw.get("params")
        if not isinstance(params, dict) or not all(isinstance(k, str) and _is_int(v) and v >= 1
                                                   for k, v in params.items()):
            raise bad("'params' is not a mapping of names to positive integers")
        if kind == "ivf" and not ({"nlist", "nprobe", "pca", "k_factor"} <= set(params)
                                  and params["nprobe"] <= params["nlist"] <= 1 << 20
                                  and params["pca"] <= raw["dim"] and params["k_factor"] <= 1000):
            raise bad("an ivf index needs nlist >= nprobe, pca <= dim and k_factor")
        label = raw.get("label_column")
        if label is not None and not isinstance(label, str):
            raise bad("'label_column' is not a column name")
        inputs = raw.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise bad("'inputs' is not a list of strings")
        sha = raw.get("index_sha256")
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise bad("'index_sha256' is not 64 hex digits")
        return cls(model=model, dim=raw["dim"], count=raw["count"], rows=raw["rows"], kind=kind,
                   params=dict(params), label_column=label, inputs=list(inputs),
                   index_sha256=sha, index_bytes=raw["index_bytes"])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_meta(folder: str | Path) -> IndexMeta:
    """``index.json`` of ``folder``, checked; a clear error for a folder that is not an index."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("no such index folder", folder,
                        hint="build one with: galaxymorph index build --out DIR INPUTS...")
    path = folder / META_FILE
    if not path.is_file():
        unfinished = (folder / EMBEDDINGS_FILE).exists() or any(folder.glob(f".{EMBEDDINGS_FILE}.parts"))
        raise DataError("not a finished index (no index.json)" if unfinished else
                        "not an index folder (no index.json)", folder,
                        hint="finish it with: galaxymorph index build --resume --out DIR INPUTS..."
                        if unfinished else "build one with: galaxymorph index build --out DIR INPUTS...")
    return IndexMeta.from_dict(read_json_object(path), path)


def write_index(folder: Path, index: Any, meta: IndexMeta) -> None:
    """Write the FAISS index, then ``index.json`` (last: the folder is finished once it exists)."""
    faiss = ann.import_faiss()
    target = folder / INDEX_FILE
    with atomic_path(target) as tmp:
        faiss.write_index(index, str(tmp))
        meta.index_sha256 = file_sha256(tmp)
        meta.index_bytes = tmp.stat().st_size
    write_json(folder / META_FILE, meta.to_dict())


def read_faiss(folder: Path, meta: IndexMeta) -> Any:
    """The FAISS index of ``folder``, after its size, SHA-256 and header match ``index.json``,
    then checked against it (dimension, count, kind, metric)."""
    faiss = ann.import_faiss()
    path = folder / INDEX_FILE
    if not path.is_file():
        raise DataError("the index file is missing", path)
    size = path.stat().st_size
    if size != meta.index_bytes:
        raise DataError(f"the index file is {size} bytes, index.json says {meta.index_bytes} "
                        "(cut short or replaced?)", path, hint="rebuild it: galaxymorph index build")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != FOURCC[meta.kind]:
        raise DataError(f"not a FAISS {meta.kind} index (it starts with {head!r})", path)
    if file_sha256(path) != meta.index_sha256:
        raise DataError("the index file's SHA-256 differs from index.json's (damaged or "
                        "replaced)", path, hint="rebuild it: galaxymorph index build")
    try:
        index = faiss.read_index(str(path))
    except Exception as exc:  # FAISS raises RuntimeError (or MemoryError) for a bad file
        raise DataError(f"not a readable FAISS index ({first_line(exc)})", path) from exc
    expected, metric = ((faiss.IndexFlatIP, faiss.METRIC_INNER_PRODUCT) if meta.kind == "flat"
                        else (faiss.IndexRefine, faiss.METRIC_L2))
    if (not isinstance(index, expected) or index.d != meta.dim or index.ntotal != meta.count
            or index.metric_type != metric):
        raise DataError(f"the index holds {type(index).__name__} of {index.ntotal} x {index.d}, "
                        f"index.json says {meta.kind} of {meta.count} x {meta.dim}", path)
    return ann.configure(index, meta.params)


def check_model(meta: IndexMeta, clf, where: Path, model: str | Path) -> None:
    """Refuse ``clf`` unless its representation is the index's (same weights, preprocessing
    and TTA); the error names both models."""
    tta = bool(meta.model["record"].get("tta", False))
    mine = clf.representation_hash(tta)
    if mine != meta.model_hash:
        theirs = meta.model
        raise ModelError(
            f"this index was built with model '{theirs['name'] or theirs['ref']}' ({theirs['ref']}, "
            f"representation {meta.model_hash[:12]}), not with '{clf.card.name or model}' "
            f"({model}, representation {mine[:12]}): embeddings of different models are not "
            "comparable", where,
            hint="use the index's own model (leave --model out), or build an index with this one")


def model_ref(meta: IndexMeta) -> str:
    return str(meta.model["ref"])
