"""What this machine offers a run: the torch device and how many worker processes to use.

One place for both, so that training, the GAN, FID, evaluation and prediction resolve
``--device auto`` and their default worker counts the same way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from galaxymorph.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

WorkerRole = Literal["train", "decode", "predict", "cache"]

SMALL_JOB = 256  # images; below this, starting worker processes costs more than it saves


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA, else Apple MPS, else CPU; any other name is checked, so that a typo or
    a GPU torch cannot see is one clear error rather than a failure deep inside torch."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{device}' (expected auto, cpu, cuda, cuda:N, mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but torch sees no CUDA GPU")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                  and torch.backends.mps.is_available()):
        raise ConfigError(f"device '{device}' asked for, but torch sees no Apple MPS device")
    return dev


def default_workers(role: WorkerRole, n_items: int | None = None) -> int:
    """Default number of data-loader worker processes for a job.

    ``train``: a loader feeding the training step from already decoded arrays; loading is
    cheap, so on a 2-core machine a worker would only steal compute from the step.
    ``decode``: processes decoding images while the main process runs a network (FID
    features); leave most cores to the network but keep at least one decoder.
    ``predict``: decoding beside ``galaxymorph predict``'s inference engine, which on a CPU is
    the lighter half: the built-in model's automatic framing costs ~7 CPU-ms per image to
    decode, its ONNX Runtime forward ~2 ms. So a small machine decodes on every core (2 cores,
    ``bench_predict.py --n 768 --arms onnx --workers 1|2``: 72-76 vs 96-98 img/s); beyond 2
    cores as ``decode`` (not measured there).
    ``cache``: decoding a dataset into the cache, with nothing else running: up to 4 cores.
    ``n_items``: the job's size in images; a small job runs in the main process.
    """
    n = os.cpu_count() or 1
    if n_items is not None and n_items <= SMALL_JOB:
        return 0
    if role == "train":
        return 0 if n <= 2 else min(4, n // 2)
    if role == "decode":
        return 1 if n <= 2 else min(8, n // 2)
    if role == "predict":
        return n if n <= 2 else min(8, n // 2)
    if role == "cache":
        return min(4, n)
    raise ValueError(f"unknown worker role {role!r}")
