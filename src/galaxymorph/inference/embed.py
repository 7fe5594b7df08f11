"""Embeddings: each image's representation in a model, for similarity search.

The representation is the network's features before its head(s) (the last layer that does not
depend on the class list), L2-normalised so that cosine similarity is a dot product. It comes
from the same engine pass as the class probabilities (the cached ONNX graph has both outputs,
:mod:`~galaxymorph.models.engine`), and the run is ``predict``'s: the same inputs, decoding,
resume, error rows and Ray path (:func:`~galaxymorph.inference.predict.run_task`), with
:class:`EmbedTask` in place of the class probabilities.

The output is Parquet (a vector per row): ``path``, a labelled source's ``label``,
``label_name`` and metadata columns, ``predicted_class`` (the model's class for the image, for
maps of unlabelled sets), ``embedding`` (float32 list) and ``error``. The schema's key-value
metadata records the model (:data:`MODEL_KEY`), the representation's hash (:data:`HASH_KEY`,
:meth:`~galaxymorph.models.loading.Classifier.representation_hash`) and its dimension
(:data:`DIM_KEY`); a ``--resume`` with another model is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from galaxymorph.errors import ConfigError
from galaxymorph.inference.batches import BatchTask
from galaxymorph.inference.sources import InputPlan

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from galaxymorph.inference.predict import PredictSummary

EMBEDDING = "embedding"
PREDICTED = "predicted_class"
#: Parquet schema metadata keys of an embedding file.
HASH_KEY, DIM_KEY, MODEL_KEY = "galaxymorph.representation_sha256", "galaxymorph.dim", "galaxymorph.model"


@dataclass
class EmbedTask(BatchTask):
    """Each readable image's L2-normalised features and the model's class for it."""

    class_names: list[str] = field(default_factory=list)
    tta: bool | None = None
    verb = "embedding"
    label_columns = ("label", "label_name")
    kinds = {EMBEDDING: "vector", PREDICTED: "str"}  # noqa: RUF012

    def columns(self) -> list[str]:
        return ["path", PREDICTED, EMBEDDING, "error"]

    def layout(self, known: list[str]) -> list[str]:
        """The path, then the catalog's columns, then the model's: what a person reads first."""
        return ["path", *known, PREDICTED, EMBEDDING, "error"]

    def compute(self, clf, tensors: list[torch.Tensor]) -> dict[str, np.ndarray]:
        embeddings, probs = clf.embed(tensors[0], self.tta)
        return {EMBEDDING: embeddings, "probs": probs}

    def rows(self, keys: list[str], errors: list[str],
             outputs: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
        vectors = outputs[EMBEDDING] if outputs else np.zeros((0, 0), np.float32)
        labels = outputs["probs"].argmax(axis=1).tolist() if outputs else []
        rows, j = [], 0
        for key, err in zip(keys, errors, strict=True):
            if err:
                rows.append({"path": key, PREDICTED: None, EMBEDDING: None, "error": err})
                continue
            rows.append({"path": key, PREDICTED: self.class_names[labels[j]],
                         EMBEDDING: np.asarray(vectors[j], dtype=np.float32), "error": ""})
            j += 1
        return rows


def embedding_metadata(clf, tta: bool | None, model: str | Path) -> dict[str, str]:
    """The schema metadata of an embedding file of ``clf`` (see the module's docstring)."""
    record = clf.representation_record(tta)
    # An absolute reference: an index queried from another folder finds its model again.
    ref = str(model) if str(model) == "default" else str(Path(model).expanduser().resolve())
    return {HASH_KEY: clf.representation_hash(tta), MODEL_KEY: json.dumps(
        {"ref": ref, "name": clf.card.name or "", "record": record}, default=str),
        DIM_KEY: str(clf_dimension(clf))}


def clf_dimension(clf) -> int:
    """``D`` of the model's embeddings (one blank image through the engine)."""
    size = clf.preprocessing.image_size
    vectors, _ = clf.embed(torch.zeros((1, 3, size, size), dtype=torch.uint8), False)
    return int(vectors.shape[1])


def embed(inputs: str | Path | Iterable[str | Path], model: str | Path = "default",
          out: str | Path | None = None, tta: bool | None = None, batch_size: int = 64,
          resume: bool = False, overwrite: bool = False, workers: int | None = None,
          engine: str = "auto", device: str = "auto", progress: bool = True,
          threads: int | None = None, crop: float | None = None) -> pd.DataFrame | PredictSummary:
    """Write the representation of every image in ``inputs`` to ``out`` (``.parquet``; None:
    return a DataFrame whose ``embedding`` cells are float32 arrays).

    ``inputs``, ``batch_size``, ``resume``, ``overwrite``, ``workers``, ``engine`` (``auto``,
    ``torch``, ``onnx``, ``ray``), ``device``, ``crop``: as :func:`~galaxymorph.predict`.
    ``tta``: the mean features over the 8 rotations/flips, so that a galaxy's embedding does
    not depend on its orientation (None: the model card's default, on for the built-in model).
    """
    from galaxymorph.inference.predict import check_run

    engine = check_run(batch_size, engine, workers, out, resume, overwrite)
    check_out(out)
    plan = InputPlan(inputs)
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, device=device, engine="auto" if engine == "ray" else engine)
    return run_embed(plan, clf.with_crop(crop), model, tta, out=out, resume=resume,
                     engine=engine, batch_size=batch_size, workers=workers, progress=progress,
                     threads=threads)


def check_out(out: str | Path | None) -> None:
    if out is not None and Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError("embeddings are written as Parquet (a vector per row): use a .parquet "
                          "file", out)


def run_embed(plan: InputPlan, clf, model: str | Path, tta: bool | None,
              out: str | Path | None = None, resume: bool = False, engine: str = "auto",
              batch_size: int = 64, workers: int | None = None, progress: bool = True,
              threads: int | None = None,
              like: dict[str, str] | None = None) -> pd.DataFrame | PredictSummary:
    """:func:`embed` with the inputs opened and the model loaded (``model``: its reference,
    for the file's metadata and Ray's actors); arguments already checked. ``like``: the
    columns of the file appended to (:func:`~galaxymorph.inference.predict.run_task`)."""
    from galaxymorph.inference.predict import run_task

    tta = clf.card.tta_default if tta is None else bool(tta)
    metadata = embedding_metadata(clf, tta, model)
    result = run_task(plan, clf, EmbedTask(list(clf.class_names), tta), model=model, out=out,
                      resume=resume, engine=engine, batch_size=batch_size, workers=workers,
                      progress=progress, threads=threads, metadata=metadata if out else None,
                      like=like)
    if out is None:
        result.attrs.update(metadata)
    return result


def read_metadata(schema_metadata: dict[bytes, bytes] | None) -> dict[str, Any] | None:
    """The model, hash and dimension an embedding file records (None: not an embedding file)."""
    raw = {k.decode(errors="replace"): v.decode(errors="replace")
           for k, v in (schema_metadata or {}).items()}
    if not {HASH_KEY, DIM_KEY, MODEL_KEY} <= set(raw):
        return None
    try:
        model = json.loads(raw[MODEL_KEY])
        dim = int(raw[DIM_KEY])
    except ValueError:
        return None
    if not isinstance(model, dict) or not 0 < dim < 1 << 20:
        return None
    return {"hash": raw[HASH_KEY], "dim": dim, "model": model}
