"""Exponential moving average of the generator's weights.

GAN generators oscillate around a good solution; averaging their weights over the last few
hundred steps gives visibly cleaner samples (Yazıcı et al. 2019). We use torch's
``AveragedModel`` with buffers averaged too (BatchNorm running statistics belong to the weights
they were measured with), and a warm-up so that a short run is not dominated by the random
initialisation: the decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_multi_avg_fn(decay: float):
    """An ``AveragedModel`` ``multi_avg_fn``: EMA with warm-up, integer buffers copied."""

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor],
               num_averaged: torch.Tensor | int) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, current, 1.0 - d)
        else:  # e.g. BatchNorm's num_batches_tracked: a counter, not something to average
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)

    return update


def make_ema(model: nn.Module, decay: float = 0.999) -> AveragedModel:
    """An EMA copy of ``model`` (kept in eval mode; call ``update_parameters`` after each step)."""
    ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(decay), use_buffers=True)
    ema.eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema
