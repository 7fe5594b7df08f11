"""Forward passes with optional test-time augmentation over the square's 8 symmetries.

For a mirrored view, the columns of chirality-sensitive classes are swapped back before
averaging (a mirrored clockwise spiral is scored as anticlockwise).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from galaxymorph.data.transforms import dihedral, is_mirror, to_float


@torch.inference_mode()
def forward_logits(net: nn.Module, x: torch.Tensor, tta: bool = False,
                   swap: list[int] | None = None) -> torch.Tensor:
    """Logits for a uint8 or [0, 1] float batch (N, 3, S, S), averaged over views with TTA."""
    x = to_float(x)
    if not tta:
        return net(x)
    total = None
    for k in range(8):
        logits = net(dihedral(x, k))
        if is_mirror(k) and swap is not None:
            logits = logits[:, swap]
        total = logits if total is None else total + logits
    return total / 8


def predict_logits(net: nn.Module, batches: Iterable, tta: bool = False,
                   swap: list[int] | None = None, device: torch.device | str = "cpu") -> np.ndarray:
    """Logits for every batch of an iterable of ``x`` or ``(x, y)`` batches."""
    net.eval().to(device)
    out = []
    for batch in batches:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        out.append(forward_logits(net, x.to(device), tta, swap).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
