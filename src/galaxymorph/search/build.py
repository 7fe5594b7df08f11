"""Build an index folder from images, and add images to one.

Building is two steps, each restartable: embed every input into ``DIR/embeddings.parquet``
(``galaxymorph embed``'s run: resumable, errors in rows, Ray at scale), then index the readable
rows with FAISS (:mod:`~galaxymorph.search.ann`; exact below ``APPROX_FROM`` vectors) and write
``index.json`` last (:mod:`~galaxymorph.search.store`). An interrupted build continues with
``--resume``. Adding embeds only the images not yet in the file, with the index's own model
(another model is refused, naming both), and adds them to the index.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.errors import ConfigError
from galaxymorph.inference.sources import InputPlan, as_list
from galaxymorph.search import ann
from galaxymorph.search.store import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    META_FILE,
    IndexMeta,
    check_model,
    read_faiss,
    read_meta,
    write_index,
)
from galaxymorph.search.table import EmbeddingFile


@dataclass
class BuildSummary:
    """What a build or an add did; ``str()`` is what the CLI prints."""

    embedded: Any  # the embed run's PredictSummary
    meta: IndexMeta
    folder: Path
    index_seconds: float

    def __str__(self) -> str:
        params = ", ".join(f"{k} {v}" for k, v in self.meta.params.items())
        return (f"{self.embedded}\nindexed {self.meta.count} embeddings of {self.meta.dim} "
                f"dimensions ({self.meta.kind}{': ' + params if params else ''}) in "
                f"{self.index_seconds:.1f} s: {self.folder}")


def build_index(inputs: str | Path | Iterable[str | Path], model: str | Path = "default",
                out: str | Path = "index", kind: str | None = None, tta: bool | None = None,
                batch_size: int = 64, resume: bool = False, overwrite: bool = False,
                workers: int | None = None, engine: str = "auto", device: str = "auto",
                progress: bool = True, crop: float | None = None) -> BuildSummary:
    """Embed ``inputs`` with ``model`` and index them in folder ``out``.

    ``kind``: ``flat`` (exact) or ``ivf`` (approximate); None picks by size
    (:func:`~galaxymorph.search.ann.choose_kind`). ``resume``: continue an interrupted build
    (images already embedded are skipped); ``overwrite``: replace an existing index. Other
    arguments: as :func:`~galaxymorph.inference.embed.embed`.
    """
    from galaxymorph.inference.embed import run_embed
    from galaxymorph.inference.predict import check_run

    if kind is not None and kind not in ann.KINDS:
        raise ConfigError(f"unknown index kind '{kind}'; use one of {', '.join(ann.KINDS)}")
    folder = Path(out)
    embeddings = folder / EMBEDDINGS_FILE
    if folder.exists() and not folder.is_dir():
        raise ConfigError("not a folder", folder)
    if (folder / META_FILE).exists() and not (resume or overwrite):
        raise ConfigError("an index already exists here", folder,
                          hint="add images with `galaxymorph index add`, or pass --overwrite")
    engine = check_run(batch_size, engine, workers, embeddings, resume, overwrite)
    plan = InputPlan(inputs)
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, device=device, engine="auto" if engine == "ray" else engine)
    clf = clf.with_crop(crop)
    ann.import_faiss()  # fail before the embedding work when FAISS is missing
    folder.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _remove_index(folder)
    # The old description goes first: until the new one is written, the folder is unfinished.
    (folder / META_FILE).unlink(missing_ok=True)
    summary = run_embed(plan, clf, model, tta, out=embeddings, resume=resume, engine=engine,
                        batch_size=batch_size, workers=workers, progress=progress)
    return _index(folder, summary, as_list(inputs), kind)


def add_to_index(index: str | Path, inputs: str | Path | Iterable[str | Path],
                 model: str | Path | None = None, batch_size: int = 64,
                 workers: int | None = None, engine: str = "auto", device: str = "auto",
                 progress: bool = True) -> BuildSummary:
    """Embed the images of ``inputs`` not yet in ``index`` and add them. ``model``: the index's
    own (None); another model is refused before any work, naming both."""
    from galaxymorph.inference.embed import run_embed
    from galaxymorph.inference.predict import check_run
    from galaxymorph.models.loading import load_classifier

    folder = Path(index)
    meta = read_meta(folder)
    engine = check_run(batch_size, engine, workers, None, False, False)
    plan = InputPlan(inputs)
    ref = model if model is not None else meta.model["ref"]
    clf = load_classifier(ref, device=device, engine="auto" if engine == "ray" else engine)
    check_model(meta, clf, folder, ref)
    current = read_faiss(folder, meta)  # a damaged index fails here, before any work
    like = EmbeddingFile.open(folder / EMBEDDINGS_FILE).kinds()
    summary = run_embed(plan, clf, ref, bool(meta.model["record"].get("tta")),
                        out=folder / EMBEDDINGS_FILE, resume=True, engine=engine,
                        batch_size=batch_size, workers=workers, progress=progress, like=like)
    # index.json stays until the new one replaces it: an interrupted add is finished by the
    # same command again (the images already appended are skipped, then indexed).
    inputs_seen = list(dict.fromkeys([*meta.inputs, *as_list(inputs)]))
    return _index(folder, summary, inputs_seen, None, current=(current, meta))


def _remove_index(folder: Path) -> None:
    """An index's own files (nothing else in the folder is touched)."""
    from galaxymorph.inference.writers import parquet_parts

    for name in (META_FILE, INDEX_FILE, EMBEDDINGS_FILE):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(parquet_parts(folder / EMBEDDINGS_FILE), ignore_errors=True)


def _index(folder: Path, summary: Any, inputs: list[str], kind: str | None,
           current: tuple[Any, IndexMeta] | None = None) -> BuildSummary:
    """Index the embedding file's readable rows (adding only the new ones to ``current`` when
    its kind still fits the size) and write the index and its description."""
    start = time.perf_counter()
    source = EmbeddingFile.open(folder / EMBEDDINGS_FILE)
    count = source.count()
    label = "label_name" if "label_name" in source.columns else None
    if current is not None and ann.choose_kind(count) == current[1].kind:
        index, old = current
        params = old.params
        _add(index, source, skip=old.count)
        kind = old.kind
    else:
        kind = kind or ann.choose_kind(count)
        params = ann.ivf_params(count, source.dim) if kind == "ivf" else {}
        if kind == "ivf" and count < params["nlist"]:
            raise ConfigError(f"an ivf index needs at least {params['nlist']} embeddings, got "
                              f"{count}; use the flat kind")
        index = ann.new_index(kind, source.dim, params)
        if kind == "ivf":
            ann.train(index, _sample(source, count, ann.train_size(count, params)))
        _add(index, source)
    ann.configure(index, params)
    model = {**source.model, "hash": source.model_hash}
    meta = IndexMeta(model=model, dim=source.dim, count=int(index.ntotal), rows=source.rows,
                     kind=kind, params=params, label_column=label, inputs=inputs)
    write_index(folder, index, meta)
    return BuildSummary(summary, meta, folder, time.perf_counter() - start)


def _add(index: Any, source: EmbeddingFile, skip: int = 0) -> None:
    """Add the file's vectors after the first ``skip`` (those the index already has)."""
    seen = 0
    for vectors in source.vectors():
        start = max(0, skip - seen)
        seen += len(vectors)
        if start < len(vectors):
            index.add(np.ascontiguousarray(vectors[start:]))


def _sample(source: EmbeddingFile, count: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of the file's ``count`` vectors, drawn at random without replacement."""
    chosen = np.zeros(count, dtype=bool)
    chosen[np.random.default_rng(seed).choice(count, size=n, replace=False)] = True
    parts, seen = [], 0
    for vectors in source.vectors():
        parts.append(vectors[chosen[seen:seen + len(vectors)]])
        seen += len(vectors)
    return np.concatenate(parts)
