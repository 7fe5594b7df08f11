"""Survey-scale prediction with Ray Data: the same model, decoding and rows as the local engine.

Pipeline: the input items (lazily expanded, sent to the object store in Arrow chunks so the
driver never holds the full list) -> ``map_batches`` decoding tasks (the local engine's
:func:`~galaxymorph.inference.predict.decode_batch`) -> ``map_batches`` with a callable class on
an actor pool, one model per actor (one GPU each when the cluster has GPUs), each running the
model's ``auto`` engine (ONNX Runtime on a CPU actor, PyTorch on a GPU) and the run's
:class:`~galaxymorph.inference.batches.BatchTask` (class probabilities, or embeddings) -> rows
streamed back to the driver and written by the same writers as the local engine.

On one machine Ray is started here (no dashboard, no network); with ``RAY_ADDRESS`` set (or
Ray already initialised) the run goes to that cluster. Ray is an optional extra:
``pip install 'galaxymorph[ray]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxymorph.errors import ConfigError, GalaxymorphError
from galaxymorph.inference.sources import InputPlan, Item

if TYPE_CHECKING:  # pragma: no cover
    from galaxymorph.inference.batches import BatchTask
    from galaxymorph.inference.source_columns import SourceColumns

log = logging.getLogger("galaxymorph")

#: Items per Arrow block sent to the object store while the inputs are expanded.
CHUNK = 8192
#: Prefix of a task's output arrays in the actors' batches.
OUT = "out_"


def _import_ray():
    try:
        import ray
        import ray.data  # the [data] extra
    except ImportError as exc:
        raise ConfigError("the Ray engine needs Ray Data, which is not installed",
                          hint="pip install 'galaxymorph[ray]' (or use --engine auto)") from exc
    return ray


def start_ray(workers: int | None = None) -> bool:
    """Connect to ``RAY_ADDRESS`` or start a local Ray; True when this call started it."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    logging.getLogger("ray").setLevel(logging.WARNING)
    try:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=max(2, workers or 0, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
    except Exception as exc:  # Ray raises bare Exception/ConnectionError for a failed start
        where = os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise GalaxymorphError(f"could not start or reach {where} ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc})",
                               hint="check the cluster (ray status), or use --engine local") from exc
    return True


def run_ray(plan: InputPlan, clf, model: str | Path, task: BatchTask, writer, summary, *,
            skip: set[str], batch_size: int, workers: int | None, progress: bool,
            known: SourceColumns | None = None) -> None:
    """Run ``task`` on every item of ``plan`` on Ray and write rows through ``writer``;
    ``known``: the source columns (true label, metadata) each row carries."""
    ray = _import_ray()
    from galaxymorph.inference.batches import counted_progress

    watchdog = None
    local = not ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
    if local:
        # A local Ray, started here: Ray fate-shares its GCS and raylet with this process, not
        # the agents and workers they start, which after a kill -9 ran on for good. The
        # watchdog (started first, so a kill during Ray's start is covered) kills them then.
        from galaxymorph.reaper import watch

        watchdog = watch()
    try:
        start_ray(workers)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver shows our own bar with images/s
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False

        views = task.views(clf)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        n_actors = workers or (int(ray.cluster_resources().get("GPU", 0)) if has_gpu else 1) or 1

        refs = [ray.put(t) for t in _item_tables(plan, skip)]
        if not refs:
            return
        items = ray.data.from_arrow_refs(refs)
        decoded = items.map_batches(_decode, batch_size=batch_size, batch_format="numpy",
                                    fn_kwargs={"plan": plan, "views": views, "cwd": os.getcwd()},
                                    num_cpus=1, udf_modifying_row_count=False)
        predicted = decoded.map_batches(
            _Predictor, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            fn_constructor_kwargs={"model": _absolute(model), "task": task.to("cpu"),
                                   "settings": clf.settings()},
            num_cpus=1 if not has_gpu else 0, num_gpus=1 if has_gpu else 0,
            udf_modifying_row_count=False)
        with counted_progress(plan, skip, progress, task.verb) as advance:
            for batch in predicted.iter_batches(batch_size=None, batch_format="numpy"):
                keys = [str(k) for k in batch["key"]]
                errors = [str(e) for e in batch["error"]]
                ok = np.array([not e for e in errors], dtype=bool)
                outputs = ({k.removeprefix(OUT): np.asarray(v)[ok] for k, v in batch.items()
                            if k.startswith(OUT)} if ok.any() else None)
                rows = task.rows(keys, errors, outputs)
                if known is not None:
                    known.fill(rows, _items(batch))
                writer.write(rows)
                for key, err in zip(keys, errors, strict=True):
                    if err:
                        summary.add_error(key, err)
                summary.n_images += len(keys)
                advance(len(keys))
    finally:
        if local:  # started here (or half-started, when ray.init failed): stopped here
            ray.shutdown()
        if watchdog is not None:
            watchdog.terminate()
            watchdog.wait()


def _items(batch: dict[str, np.ndarray]) -> list[Item]:
    """The items of a batch as the driver walked them (source -1: a plain file)."""
    return [Item(str(k), None if int(s) < 0 else int(s), int(i))
            for k, s, i in zip(batch["key"], batch["source"], batch["index"], strict=True)]


def _absolute(ref: str | Path | None) -> str | None:
    """Model refs for the actors: a relative path must not depend on a worker's folder."""
    if ref is None or str(ref) == "default":
        return None if ref is None else "default"
    return str(Path(ref).expanduser().resolve())


def _item_tables(plan: InputPlan, skip: set[str]) -> Iterator[Any]:
    import pyarrow as pa

    keys: list[str] = []
    sources: list[int] = []
    indices: list[int] = []
    for item in plan:
        if skip and item.key in skip:
            continue
        keys.append(item.key)
        sources.append(-1 if item.source is None else item.source)
        indices.append(item.index)
        if len(keys) == CHUNK:
            yield pa.table({"key": keys, "source": sources, "index": indices})
            keys, sources, indices = [], [], []
    if keys:
        yield pa.table({"key": keys, "source": sources, "index": indices})


def _decode(batch: dict[str, np.ndarray], plan: InputPlan, views: list, cwd: str) -> dict[str, Any]:
    """Ray task: decode a batch of items like the local engine (zeros where unreadable)."""
    import torch

    from galaxymorph.inference.batches import decode_batch

    torch.set_num_threads(1)
    if os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)  # relative paths as the driver saw them (one machine or a shared disk)
    keys, errors, *tensors = decode_batch(plan, _items(batch), views)
    ok = np.array([not e for e in errors], dtype=bool)
    # source and index travel on, so the driver can add the source's columns to each row.
    out: dict[str, Any] = {"key": np.array(keys, dtype=object), "error": np.array(errors, dtype=object),
                           "source": batch["source"], "index": batch["index"]}
    for n, (t, v) in enumerate(zip(tensors, views, strict=True)):
        full = np.zeros((len(keys), 3, v.image_size, v.image_size), dtype=np.uint8)
        full[ok] = t.numpy()
        out[f"image{n}"] = full
    return out


class _Predictor:
    """Ray actor: loads the model once and runs the task on decoded batches."""

    def __init__(self, model: str, task: BatchTask, settings: dict[str, Any] | None = None):
        import torch

        from galaxymorph.models.loading import load_classifier

        # CPU threads: Ray sets OMP_NUM_THREADS to the actor's num_cpus, which torch follows.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.clf = load_classifier(model, device=device)
        if settings is not None:  # the driver's crop, taxonomy and convention
            self.clf = self.clf.with_settings(settings)
        self.task = task.to(device)  # pickled by Ray, with its detector if any

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        errors = batch["error"]
        ok = np.array([not e for e in errors], dtype=bool)
        views = sorted(k for k in batch if k.startswith("image"))
        # A batch of unreadable images still gets every output (NaN), so all blocks share one
        # schema: the task runs on one blank image to learn the arrays' widths.
        rows = ok if ok.any() else np.arange(len(errors)) == 0
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(batch[v][rows])) for v in views]
            outputs = self.task.compute(self.clf, tensors)
        out: dict[str, Any] = {}
        for name, values in outputs.items():
            values = np.asarray(values)
            if values.dtype.kind in "OUS":  # text (a detector's verdict): "" where unreadable
                full = np.full(len(errors), "", dtype=object)
            else:
                full = np.full((len(errors), *values.shape[1:]), np.nan,
                               dtype=np.result_type(values, np.float32))
            if ok.any():
                full[ok] = values
            out[OUT + name] = full
        return {"key": batch["key"], "error": errors, **out,
                "source": batch["source"], "index": batch["index"]}
