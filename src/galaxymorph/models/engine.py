"""Inference engines: one network, run by PyTorch or by ONNX Runtime, behind one call.

On a CPU, ONNX Runtime runs the same graph several times faster than eager PyTorch (fused
convolutions, no per-operator dispatch; issue 18 measured 1,413 vs 298 img/s for the built-in
model), so ``auto`` picks it there; on a GPU it picks PyTorch. The ONNX graph is exported on
first use and cached, keyed by a hash of the weights and the network's structure (new weights,
new file), and checked against PyTorch once, at export, within :data:`TOLERANCE`. A model that
does not export, or a Python without onnxruntime, falls back to PyTorch with one warning
(``auto``) or fails with one clear error (``onnx``).

Every engine takes uint8 or ``[0, 1]`` float batches ``(N, 3, S, S)`` and returns float32
logits, and with them (:meth:`Engine.outputs`) the network's representation: the input of its
head, which the cached graph exports as a second output (``features``), so an embedding costs
no pass of its own. Test-time augmentation stacks the 8 views of a batch into one engine call.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from galaxymorph.data.transforms import dihedral, is_mirror, to_float
from galaxymorph.errors import ConfigError, GalaxymorphError, ModelError
from galaxymorph.io_utils import atomic_path, read_json_object, write_json
from galaxymorph.io_utils import file_sha256 as _file_sha256  # a module name tests replace
from galaxymorph.runtime import resolve_device

log = logging.getLogger("galaxymorph")

#: What ``engine=`` accepts for one model (``predict`` adds ``ray``).
ENGINES = ("auto", "torch", "onnx")
#: Largest |p_onnx - p_torch| accepted when a graph is exported; float32 graphs agree to ~1e-6.
TOLERANCE = 1e-4
#: Bumped when the cached graph's recipe changes, so old cache files are not reused
#: (2: the graph has the ``features`` output beside ``logits``).
CACHE_VERSION = 2
CACHE_PREFIX = "engine-"
#: The graph's second output: the network's representation (the input of its head).
FEATURES = "features"


def check_engine(kind: str) -> str:
    if kind not in ENGINES:
        raise ConfigError(f"unknown inference engine '{kind}'; use one of {', '.join(ENGINES)}")
    return kind


def shared_cache_dir() -> Path:
    """Where graphs go when the model's own folder is not to be written (the installed built-in
    model, read-only folders): ``$GALAXYMORPH_HOME/cache/engines``."""
    from galaxymorph.paths import cache_dir

    return cache_dir() / "engines"


def shared_graphs(folder: Path | None = None) -> list[Path]:
    """The cached ONNX graphs (and their sidecars) in the shared engine cache: exported again
    on first use when removed."""
    root = folder or shared_cache_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{CACHE_PREFIX}*") if p.suffix in (".onnx", ".json"))


class Engine:
    """Runs one network; subclasses implement :meth:`forward`."""

    name = "engine"

    def forward(self, x: torch.Tensor) -> np.ndarray:
        """float32 logits ``(N, C)`` of a float ``[0, 1]`` batch ``(N, 3, S, S)``."""
        raise NotImplementedError

    def forward_both(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """float32 logits ``(N, C)`` and features ``(N, D)`` (the head's input) of a float batch."""
        raise NotImplementedError

    def logits(self, x: torch.Tensor, tta: bool = False, swap: Sequence[int] | None = None) -> np.ndarray:
        """Logits of a uint8 or float batch; with ``tta`` the mean over the square's 8
        symmetries, computed as one batch of ``8 N`` (one engine call: the cost of 8 forward
        passes and nothing else). Mirrored views get the chiral classes' columns swapped back
        (a mirrored clockwise spiral is scored as anticlockwise)."""
        if not tta:
            return self.forward(to_float(x))
        return _view_mean(self.forward(_eight_views(x)).reshape(8, x.shape[0], -1), swap)

    def outputs(self, x: torch.Tensor, tta: bool = False,
                swap: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits (as :meth:`logits`) and raw features of one pass; with ``tta`` both are the
        means over the 8 views (the features then do not depend on the galaxy's orientation)."""
        if not tta:
            return self.forward_both(to_float(x))
        n = x.shape[0]
        logits, feats = self.forward_both(_eight_views(x))
        return (_view_mean(logits.reshape(8, n, -1), swap),
                _view_mean(feats.reshape(8, n, -1), None))


def _eight_views(x: torch.Tensor) -> torch.Tensor:
    """The square's 8 symmetries of a batch, stacked as one float batch of ``8 N``."""
    return to_float(torch.cat([dihedral(x, k) for k in range(8)]))


def _view_mean(out: np.ndarray, swap: Sequence[int] | None) -> np.ndarray:
    """Mean over the 8 views ``(8, N, C)``; ``swap``: columns a mirror exchanges, put back."""
    if swap is not None:
        mirrors = [k for k in range(8) if is_mirror(k)]
        out[mirrors] = out[mirrors][:, :, list(swap)]
    return out.mean(axis=0, dtype=np.float64).astype(np.float32)


class TorchEngine(Engine):
    """Eager PyTorch under ``inference_mode``, channels-last on CPU and CUDA (about 2x faster
    on CPU for the zoo's convolutional networks; the numbers agree to ~1e-6)."""

    name = "torch"

    def __init__(self, net: nn.Module, device: torch.device | str = "cpu"):
        self.device = resolve_device(device)
        self.channels_last = self.device.type in ("cpu", "cuda")
        self.net = net.eval().to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.net(self._input(x)).float().cpu().numpy()

    def forward_both(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        from galaxymorph.models.introspect import FeatureTap

        with torch.inference_mode():
            logits, feats = FeatureTap(self.net)(self._input(x))
            return logits.float().cpu().numpy(), feats.float().cpu().numpy()


#: Every ONNX engine of this process, and (in a forked child) the sessions it inherited.
_LIVE: weakref.WeakSet[OnnxEngine] = weakref.WeakSet()
_INHERITED: list[Any] = []


def _keep_inherited_sessions() -> None:
    """In a forked child (predict's decoders, data-loader workers), never free a session.

    A session's destructor joins its intra-op threads, which fork does not copy: a child whose
    garbage collector reached a session inherited from its parent hung for ever. Forked children
    leave through ``os._exit``, so holding the sessions costs nothing.
    """
    for engine in list(_LIVE):
        _INHERITED.extend(engine._sessions.values())


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_keep_inherited_sessions)


class OnnxEngine(Engine):
    """ONNX Runtime on the CPU; one session per intra-op thread count (torch's setting when
    first called, so callers that set ``torch.set_num_threads`` steer both engines)."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.threads = threads
        self._sessions: dict[int, Any] = {}
        _LIVE.add(self)

    def session(self) -> Any:
        import onnxruntime as ort

        n = self.threads or torch.get_num_threads()
        if n not in self._sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self._sessions[n] = ort.InferenceSession(str(self.path), opts,
                                                     providers=["CPUExecutionProvider"])
        return self._sessions[n]

    def forward(self, x: torch.Tensor) -> np.ndarray:
        return self.session().run(["logits"], {"image": _array(x)})[0]

    def forward_both(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        session = self.session()
        if FEATURES not in {o.name for o in session.get_outputs()}:
            raise ModelError("this network has no feature layer (no registry model's head) to "
                             "take a representation from", self.path)
        logits, feats = session.run(["logits", FEATURES], {"image": _array(x)})
        return logits, feats


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


def weights_key(net: nn.Module, image_size: int, opset: int) -> str:
    """SHA-256 of the weights (names, dtypes, shapes, bytes), the module structure, the input
    size and the export recipe: the cache key of an exported graph."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION};opset{opset};size{image_size};".encode())
    h.update(repr(net).encode())
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name};{t.dtype};{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _cache_dirs(model_dir: str | Path | None) -> list[Path]:
    """Where a model's graph is looked for, in order: beside the model, the shared cache."""
    beside = Path(model_dir) if model_dir is not None else None
    return [d for d in (beside, shared_cache_dir()) if d is not None]


def onnx_engine(net: nn.Module, image_size: int, model_dir: str | Path | None = None,
                temperature: float = 1.0, threads: int | None = None,
                built_from: dict | None = None) -> OnnxEngine:
    """The ONNX Runtime engine of ``net``: the cached graph of these weights, or a new export.

    The graph is looked for beside the model (``model_dir``), then in :func:`shared_cache_dir`;
    a new export goes to the first of them that is writable. ``built_from``: the
    :func:`weights_record` of the file ``net`` was loaded from, noted in the graph's sidecar so
    that the next load finds the graph without building the network (:func:`graph_for`).
    Raises :class:`ModelError` when the network does not export or disagrees with PyTorch, and
    ``ImportError`` when onnxruntime (or onnx) is missing.
    """
    import onnxruntime  # noqa: F401  (fail before any work when it is missing)

    from galaxymorph.models.onnx_graph import OPSET

    key = weights_key(net, image_size, OPSET)
    name = f"{CACHE_PREFIX}{key[:20]}"
    dirs = _cache_dirs(model_dir)
    for d in dirs:
        if _cached(d, name, key):
            _note_source(d, name, built_from)
            return OnnxEngine(d / f"{name}.onnx", threads)
    errors = []
    for d in dirs:
        try:
            path = _export(net, image_size, d, name, key, temperature, OPSET)
        except OSError as exc:  # read-only or full: try the next folder
            errors.append(f"{d}: {exc.strerror or exc}")
            continue
        if d == dirs[0] and model_dir is not None:
            _drop_stale(d, name)  # never in the shared cache, which holds other models' graphs
        _note_source(d, name, built_from)
        return OnnxEngine(path, threads)
    raise ModelError("no writable folder for the ONNX engine cache (" + "; ".join(errors) + ")")


# -- finding a graph from the weights file alone ---------------------------------------------
# Building the network to hash it costs its imports (torchvision: ~1.5 s) and its construction,
# a large share of a short `predict` run whose graph is already cached. A graph's sidecar
# therefore also lists the weights files it was exported from (their SHA-256 with the card's
# network fields and the library versions that built the network); a model loaded from such a
# file gets the graph directly, and builds its network only if something asks for it.

#: Sources noted per graph (the same weights under a few library versions).
_MAX_SOURCES = 8


def weights_record(weights: str | Path, architecture: str, num_classes: int, model_kwargs: dict,
                   image_size: int) -> dict:
    """What determines the network built from a model folder: the weights file's SHA-256, the
    card's network fields, and the versions of the code that builds it."""
    from importlib import metadata

    from galaxymorph.models.onnx_graph import OPSET

    versions = {}
    for dist in ("galaxymorph", "torch", "torchvision", "timm"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"weights_sha256": _file_sha256(Path(weights)), "architecture": architecture,
            "num_classes": int(num_classes), "model_kwargs": dict(model_kwargs),
            "image_size": int(image_size), "opset": OPSET, "cache_version": CACHE_VERSION,
            "versions": versions}


def graph_for(record: dict, model_dir: str | Path | None = None) -> Path | None:
    """The cached graph exported from the weights ``record`` describes (a passed check, the
    graph file unchanged since), or None."""
    for d in _cache_dirs(model_dir):
        if not d.is_dir():
            continue
        for sidecar in sorted(d.glob(f"{CACHE_PREFIX}*.json")):
            try:
                info = read_json_object(sidecar)
            except GalaxymorphError:  # unreadable or not an object: not ours to use
                continue
            sources = info.get("built_from")
            if not (isinstance(sources, list) and record in sources
                    and isinstance(info.get("key"), str)):
                continue
            try:
                if _cached(d, sidecar.stem, info["key"]):
                    return d / f"{sidecar.stem}.onnx"
            except OSError:  # an unreadable graph is not used (the network is built instead)
                continue
    return None


def _note_source(folder: Path, name: str, record: dict | None) -> None:
    """Add ``record`` to the graph's sidecar (best effort: a read-only cache still works)."""
    if record is None:
        return
    try:
        info = read_json_object(folder / f"{name}.json")
    except GalaxymorphError:
        return
    sources = info.get("built_from")
    sources = [s for s in sources if isinstance(s, dict)] if isinstance(sources, list) else []
    if record in sources:
        return
    info["built_from"] = [*sources, record][-_MAX_SOURCES:]
    with contextlib.suppress(OSError):
        write_json(folder / f"{name}.json", info)


def _cached(folder: Path, name: str, key: str) -> bool:
    """A graph we wrote for exactly these weights, that passed its check, and unchanged since."""
    graph = folder / f"{name}.onnx"
    if not graph.is_file():
        return False
    try:
        info = read_json_object(folder / f"{name}.json")
    except GalaxymorphError:
        return False
    diff = info.get("max_abs_diff")
    # The file name holds a prefix of the key; the sidecar must hold all of it, a passed check
    # and the graph's own hash (a file edited or cut short since is exported again).
    return (info.get("key") == key and isinstance(diff, int | float) and not isinstance(diff, bool)
            and diff <= TOLERANCE and info.get("sha256") == _file_sha256(graph))


def _export(net: nn.Module, image_size: int, folder: Path, name: str, key: str,
            temperature: float, opset: int) -> Path:
    import onnxruntime

    from galaxymorph.models.introspect import FeatureTap, has_features
    from galaxymorph.models.onnx_graph import export_graph, exportable, first_line

    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(13, "not writable", str(folder))
    path = folder / f"{name}.onnx"
    with atomic_path(path) as tmp:
        # A registry network exports its features too; any other, its logits alone.
        tapped = has_features(net)
        module = exportable(net, image_size)
        try:
            if tapped:
                export_graph(FeatureTap(module), image_size, tmp, ["logits", FEATURES], opset)
            else:
                export_graph(module, image_size, tmp, ["logits"], opset)
        except OSError:
            raise
        except Exception as exc:  # the exporter raises many types for an unsupported operator
            raise ModelError(f"the network does not export to ONNX ({first_line(exc)})") from exc
        diff = _check(net, OnnxEngine(tmp, threads=1), image_size, temperature, tapped)
        if not diff <= TOLERANCE:
            raise ModelError(f"the ONNX graph disagrees with PyTorch: max |Δp| = {diff:.2e} > "
                             f"{TOLERANCE:g}")
        digest = _file_sha256(tmp)
    write_json(folder / f"{name}.json", {
        "key": key, "sha256": digest, "max_abs_diff": diff, "tolerance": TOLERANCE,
        "image_size": image_size, "opset": opset, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__})
    log.info("exported the ONNX engine graph to %s (max |Δp| vs PyTorch %.1e)", path, diff)
    return path


def _check(net: nn.Module, engine: OnnxEngine, image_size: int, temperature: float,
           tapped: bool = False, n: int = 4, seed: int = 0) -> float:
    """Largest probability difference between the graph and PyTorch on random images; with
    ``tapped``, the largest difference of the L2-normalised features too (what an embedding
    keeps of them), whichever is larger."""
    from galaxymorph.models.introspect import FeatureTap

    x = torch.rand(n, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        logits, feats = FeatureTap(net)(x.to(device)) if tapped else (net(x.to(device)), None)
        expected = torch.softmax(logits.float().cpu() / temperature, dim=1).numpy()
    got_logits, got_feats = engine.forward_both(x) if tapped else (engine.forward(x), None)
    got = torch.softmax(torch.from_numpy(got_logits) / temperature, dim=1).numpy()
    diff = float(np.abs(got - expected).max())
    if feats is not None:
        diff = max(diff, float(np.abs(unit_rows(got_feats) - unit_rows(feats.float().cpu().numpy())).max()))
    return diff


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (a zero row stays zero): what an embedding is."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


def _drop_stale(folder: Path, keep: str) -> None:
    """Graphs of earlier weights beside a model are dead weight once the new one is written."""
    for old in folder.glob(f"{CACHE_PREFIX}*"):
        if old.stem != keep and old.suffix in (".onnx", ".json"):
            with contextlib.suppress(OSError):
                old.unlink()


def wants_onnx(kind: str, device: torch.device | str) -> bool:
    """Whether engine ``kind`` on ``device`` is ONNX Runtime (``auto``: on a CPU)."""
    return kind == "onnx" or (kind == "auto" and resolve_device(device).type == "cpu")


def make_engine(net: nn.Module, image_size: int, kind: str = "auto",
                device: torch.device | str = "cpu", model_dir: str | Path | None = None,
                temperature: float = 1.0, built_from: dict | None = None) -> Engine:
    """The engine ``kind`` (``auto``: ONNX Runtime on CPU, PyTorch elsewhere) for ``net``;
    ``model_dir``: the model's own folder, where its graph is cached (None: the shared cache);
    ``built_from``: see :func:`onnx_engine`."""
    check_engine(kind)
    device = resolve_device(device)
    if not wants_onnx(kind, device):
        return TorchEngine(net, device)
    try:
        return onnx_engine(net, image_size, model_dir, temperature, built_from=built_from)
    except ImportError as exc:
        if kind == "onnx":
            raise ConfigError(f"the onnx engine needs onnxruntime and onnx, which are not importable "
                              f"({exc})", hint="pip install onnxruntime onnx, or use --engine torch") from exc
        log.warning("onnxruntime is not importable (%s): running the model in PyTorch", exc)
    except ModelError as exc:
        if kind == "onnx":
            raise
        log.warning("%s: running the model in PyTorch instead of ONNX Runtime", exc)
    return TorchEngine(net, device)
