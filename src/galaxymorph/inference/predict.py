"""Batch prediction: images on disk -> class probabilities in CSV, JSON or Parquet.

Built to run over a survey with flat memory: inputs are expanded lazily and walked once
(:mod:`~galaxymorph.inference.sources`), cut into chunks that a bounded pool of decoding
processes prepares in input order (:mod:`~galaxymorph.inference.decoding`), the model's engine
(ONNX Runtime on CPU by default: :mod:`~galaxymorph.models.engine`) runs whole batches, the 8
TTA views of a batch in one call, and rows are written as they arrive
(:mod:`~galaxymorph.inference.writers`). An unreadable image becomes a row with its
``error`` set; it never stops the run.

``galaxymorph.predict(["a.jpg", "folder/"])`` returns a pandas DataFrame (for notebooks);
with ``out="preds.csv"`` it writes the file and returns a :class:`PredictSummary`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from galaxymorph.errors import ConfigError, DataError
from galaxymorph.inference.batches import (  # noqa: F401  (re-exported: predict's public pieces)
    BatchTask,
    ClassifierView,
    DetectorLike,
    PredictTask,
    View,
    classifier_view,
    counted_progress,
    decode_batch,
    error_text,
    make_rows,
    vote_columns,
)
from galaxymorph.inference.source_columns import SourceColumns
from galaxymorph.inference.sources import InputPlan, Item
from galaxymorph.inference.writers import Writer, done_paths, open_writer
from galaxymorph.runtime import default_workers

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("galaxymorph")

#: ``engine=`` choices: a model engine here, or Ray actors (each running ``auto``).
PREDICT_ENGINES = ("auto", "torch", "onnx", "ray")
#: How many unreadable images the summary names (the output file has all of them).
MAX_LISTED_ERRORS = 10


@dataclass
class PredictSummary:
    """What a run did; ``str()`` is the one-paragraph report the CLI prints."""

    n_images: int = 0
    n_errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0  # time in the engine (not Ray): the rest is overhead
    out: str | None = None
    model: str = ""
    engine: str = "auto"  # after a local run, the engine that ran: onnx or torch
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return self.n_images - self.n_errors

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else 0.0

    def add_error(self, key: str, message: str) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append((key, message))

    def __str__(self) -> str:
        text = f"{self.n_images} images, {self.n_errors} unreadable"
        if self.errors:
            listed = "; ".join(_short_error(k, m) for k, m in self.errors)
            more = f" (and {self.n_errors - len(self.errors)} more)" if self.n_errors > len(self.errors) else ""
            text += f": {listed}{more}"
        if self.skipped:
            text += f"\n{self.skipped} already in the output, skipped (--resume)"
        rate = f"{self.images_per_second:.0f} images/s" if self.seconds > 0 else ""
        where = f"written to {self.out}" if self.out else "done"
        return f"{text}\n{where} in {self.seconds:.1f} s ({rate}, {self.engine} engine)"

    def to_dict(self) -> dict[str, Any]:
        return {"n_images": self.n_images, "n_ok": self.n_ok, "n_errors": self.n_errors,
                "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "forward_seconds": round(self.forward_seconds, 3),
                "images_per_second": round(self.images_per_second, 1), "out": self.out,
                "model": self.model, "engine": self.engine,
                "errors": [{"path": k, "error": m} for k, m in self.errors]}


def _short_error(key: str, message: str) -> str:
    return f"{key} ({message.splitlines()[0] if message else 'unreadable'})"


def predict(inputs: str | Path | Iterable[str | Path], model: str | Path = "default",
            tta: bool = False, batch_size: int = 64, out: str | Path | None = None,
            resume: bool = False, overwrite: bool = False, workers: int | None = None,
            engine: str = "auto", device: str = "auto", detector: DetectorLike | None = None,
            progress: bool = True, threads: int | None = None,
            crop: float | None = None, convention: str | None = None,
            taxonomy: str | None = None) -> pd.DataFrame | PredictSummary:
    """Predict the class of every image in ``inputs``.

    ``inputs``: image files, folders (recursive), globs, dataset specs (``catalog:CSV``,
    ``folder:PATH``, ``galaxy10-decals:H5``) or catalog CSVs, alone or in a list.
    ``model``: ``"default"``, a run folder or a checkpoint. ``tta``: average over the 8
    rotations/flips (off by default: 8x the compute; ``None`` follows the model card).
    ``out``: ``.csv``, ``.json`` (array), ``.jsonl`` or ``.parquet``; ``None`` returns a DataFrame. ``resume``: skip the images
    already in ``out`` and append. ``workers``: decoding processes, or Ray actors with
    ``engine="ray"``. ``engine``: ``auto`` (ONNX Runtime on CPU, PyTorch on a GPU), ``torch``,
    ``onnx`` or ``ray`` (Ray actors, each running ``auto``); ``local`` is the old name of
    ``auto``. ``detector``: a loaded real-vs-synthetic detector
    (``galaxymorph.load_detector(RUN_DIR)``), run on the same engine; adds its columns
    (``writers.DETECTOR_COLUMNS``: the score, the verdict, the parts that flagged it, the parts).
    ``crop``: a fixed centre crop (fraction of the shorter side) instead of the model's own
    framing (e.g. automatic framing), for cutouts whose galaxy framing you know better.
    ``convention``: answer in the labelling convention of one of the model's noisy training
    sources (``"gz1"`` for the built-in model: the classes Galaxy Zoo 1's raw majority would
    give): the map ``calibrate --conventions`` re-fitted on that source's validation images,
    else ``p @ T`` with its learned transition matrix.
    A decision-tree model adds its vote fractions, one ``vote_<question>_<answer>`` column per
    answer (conditional: each question's answers sum to 1), and answers in ``taxonomy``
    (``gz1-4``, its default; ``gz2-8``; ``galaxy10``).
    Rows of a labelled input also carry its ``true_label``, ``true_label_name`` and metadata
    columns (:mod:`~galaxymorph.inference.source_columns`).
    """
    engine = check_run(batch_size, engine, workers, out, resume, overwrite)
    if detector is not None and not isinstance(detector, DetectorLike):
        raise ConfigError("detector must be a loaded detector: "
                          "galaxymorph.load_detector(RUN_DIR), not a path")
    plan = InputPlan(inputs)
    from galaxymorph.models.loading import load_classifier

    local = "auto" if engine == "ray" else engine
    clf = load_classifier(model, device=device, engine=local).with_crop(crop) \
        .with_taxonomy(taxonomy).with_convention(convention)
    det = detector.to(clf.device) if detector is not None else None
    if det is not None and local != "auto":
        det.use_engine(local)  # an engine asked for by name runs both networks
    return run_task(plan, clf, PredictTask.of(clf, tta, det), model=model, out=out, resume=resume,
                    engine=engine, batch_size=batch_size, workers=workers, progress=progress,
                    threads=threads)


def check_run(batch_size: int, engine: str, workers: int | None, out: str | Path | None,
              resume: bool, overwrite: bool) -> str:
    """Check a run's arguments before anything is loaded; returns the engine (``local``: ``auto``)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if engine == "local":
        warnings.warn("engine 'local' is deprecated: it is now 'auto' (ONNX Runtime on CPU, "
                      "PyTorch on a GPU); use auto, torch or onnx", FutureWarning, stacklevel=3)
        engine = "auto"
    if engine not in PREDICT_ENGINES:
        raise ConfigError(f"unknown engine '{engine}'; use one of {', '.join(PREDICT_ENGINES)}")
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    if resume and (out is None or str(out) == "-"):
        raise ConfigError("--resume needs --out: the file whose rows are skipped and appended to")
    if out is not None and str(out) != "-":
        from galaxymorph.inference.writers import output_exists

        # output_exists also fails on a bad suffix, before anything is loaded.
        if output_exists(out) and not (resume or overwrite):
            raise ConfigError("output file exists", out,
                              hint="pass --resume to skip its images and append, or --overwrite")
    return engine


def run_task(plan: InputPlan, clf, task: BatchTask, *, model: str | Path, out: str | Path | None,
             resume: bool, engine: str, batch_size: int, workers: int | None, progress: bool,
             threads: int | None = None,
             metadata: dict[str, str] | None = None,
             like: dict[str, str] | None = None) -> pd.DataFrame | PredictSummary:
    """Run ``task`` over every input on ``engine`` (checked by :func:`check_run`) and write its
    rows to ``out`` (None: return a DataFrame), resumable, errors in rows; ``metadata``: key-value
    pairs a Parquet output keeps (and a resumed one must match). ``like``: the columns (and
    their kinds) of the file these rows are appended to, which may have more than these inputs
    bring (plain images added to a catalog's rows leave its columns empty)."""
    # A labelled source's label and metadata columns go where the task places them.
    known = SourceColumns.of(plan, task.columns(), label_columns=task.label_columns)
    columns = task.layout(known.names)
    kinds = {**known.kinds, **task.kinds}
    if like is not None:
        extra = [c for c in columns if c not in like]
        if extra:
            raise DataError(f"these inputs bring columns the output does not have ({', '.join(extra)}); "
                            "rows already written cannot gain columns", out)
        columns, kinds = list(like), {**like, **kinds}
    skip = done_paths(out) if resume and out is not None else set()

    collected: list[dict[str, Any]] | None = [] if out is None else None
    summary = PredictSummary(out=None if out is None or str(out) == "-" else str(out),
                             model=str(model), engine=engine)
    start = time.perf_counter()
    with _terminate_as_interrupt():
        writer = _ListWriter(columns, collected) if collected is not None else \
            open_writer(out, columns, append=resume, kinds=kinds, metadata=metadata)
        try:
            if engine == "ray":
                from galaxymorph.inference.ray_engine import run_ray

                run_ray(plan, clf, model, task, writer, summary, skip=skip,
                        batch_size=batch_size, workers=workers, progress=progress, known=known)
            else:
                _run_local(plan, clf, task, writer, summary, skip=skip, batch_size=batch_size,
                           workers=workers, progress=progress, threads=threads, known=known)
                summary.engine = clf.engine_name
        finally:
            writer.close()
    summary.seconds = time.perf_counter() - start
    if engine == "ray" and skip:
        # What was really skipped among these inputs, not how many rows the old file holds
        # (the local engine counts it during its one walk).
        summary.skipped = sum(1 for it in plan if it.key in skip)
    if collected is not None:
        return _to_frame(collected, columns, summary, kinds)
    return summary


# -- local engine ---------------------------------------------------------------------------


def _run_local(plan: InputPlan, clf, task: BatchTask, writer: Writer, summary: PredictSummary, *,
               skip: set[str], batch_size: int, workers: int | None,
               progress: bool, threads: int | None, known: SourceColumns) -> None:
    n_workers = default_workers("predict") if workers is None else workers
    if not threads and clf.device.type == "cpu":
        threads = engine_threads(os.cpu_count() or 1, n_workers,
                                 clf.card.tta_default if task.tta is None else task.tta)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # the ONNX engine's session follows it too
    try:
        _local_loop(plan, clf, task, writer, summary, skip=skip, batch_size=batch_size,
                    n_workers=n_workers, progress=progress, known=known)
    finally:
        torch.set_num_threads(previous)


def engine_threads(cores: int, n_workers: int, tta: bool) -> int:
    """Intra-op threads of the network on a CPU beside ``n_workers`` decoders.

    Without TTA, decoding an image (with the model's framing) costs about as much CPU as its
    forward pass, and each decoder takes the network about half a core (they run at lower
    priority): ``cores - n_workers // 2`` (ONNX Runtime with 2 decoders on 2 cores: 1 thread
    beat 2, 195 vs 180 img/s on 3,000 GZ1 JPEGs, an informal check). With TTA the network does
    8 passes per decoded image, so it gets every core (1,000 images: 50 vs 38 img/s with 2
    threads vs 1, an informal check; ``bench_predict.py --tta`` then printed 0.47-0.60x).
    """
    if tta:
        return max(1, cores)
    return max(1, cores - n_workers // 2)


def _local_loop(plan: InputPlan, clf, task: BatchTask, writer: Writer, summary: PredictSummary, *,
                skip: set[str], batch_size: int, n_workers: int,
                progress: bool, known: SourceColumns) -> None:
    from galaxymorph.inference.decoding import Walk, decoded_batches
    from galaxymorph.progress import progress_bar as bar

    views = task.views(clf)
    walk = Walk(plan, skip)  # the one pass over the inputs: no worker or counter walks again
    taken: deque[list[Item]] = deque()  # the chunks in flight: batches come back in this order

    def chunks() -> Iterator[list[Item]]:
        for chunk in walk.chunks(batch_size):
            taken.append(chunk)
            yield chunk

    batches = decoded_batches(plan, views, chunks(), n_workers)
    # closing(): a failure in this loop shuts the decoding pool down at once, not at garbage collection.
    with contextlib.closing(batches), torch.inference_mode(), \
            bar(task.verb, None, unit="images", enabled=progress, transient=False) as shown:
        total_known = False
        for keys, errors, *arrays in batches:
            tensors = [torch.from_numpy(a) for a in arrays]
            t0 = time.perf_counter()
            outputs = task.compute(clf, tensors) if len(tensors[0]) else None
            summary.forward_seconds += time.perf_counter() - t0
            writer.write(known.fill(task.rows(keys, errors, outputs), taken.popleft()))
            for key, err in zip(keys, errors, strict=True):
                if err:
                    summary.add_error(key, err)
            summary.n_images += len(keys)
            if walk.done and not total_known:  # the walk ran ahead: now the bar has a total
                shown.reset(walk.count, completed=summary.n_images - len(keys))
                total_known = True
            shown.advance(len(keys))
    summary.skipped = walk.skipped


# -- output helpers ------------------------------------------------------------------------


class _ListWriter(Writer):
    """Keeps rows in memory for the DataFrame the notebook API returns."""

    def __init__(self, columns: list[str], rows: list[dict[str, Any]]):
        super().__init__(None, columns)
        self._rows = rows

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._rows.extend(rows)
        self.rows_written += len(rows)


def _to_frame(rows: list[dict[str, Any]], columns: list[str], summary: PredictSummary,
              kinds: dict[str, str]):
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    # Integer columns with gaps (error rows, plain files beside a catalog) as nullable integers,
    # built from the values themselves: through float64 a 64-bit object id would be rounded.
    for column in ["label", *(c for c, k in kinds.items() if k == "int")]:
        if column in df:
            df[column] = pd.array([r.get(column) for r in rows], dtype="Int64")
    if "uncertain" in df:
        df["uncertain"] = df["uncertain"].astype("boolean")
    df.attrs["summary"] = summary.to_dict()
    return df


# -- progress and signals ------------------------------------------------------------------


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a batch scheduler's stop) into KeyboardInterrupt so writers close cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not allowed here (embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
