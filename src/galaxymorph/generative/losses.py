"""Adversarial losses on raw discriminator scores (logits).

Hinge (Lim & Ye 2017; SNGAN, BigGAN) is the default: the discriminator stops pushing on
samples it already classifies with a margin, which keeps its scores bounded. The
non-saturating loss (Goodfellow et al. 2014) is the classic alternative.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from galaxymorph.errors import ConfigError


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def nonsat_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(real) - log(1 - sigmoid(fake)), written with softplus for stability.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def nonsat_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


LOSSES: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        Callable[[torch.Tensor], torch.Tensor]]] = {
    "hinge": (hinge_d, hinge_g),
    "nonsat": (nonsat_d, nonsat_g),
}


def get_losses(name: str) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                                   Callable[[torch.Tensor], torch.Tensor]]:
    """``(d_loss(real_scores, fake_scores), g_loss(fake_scores))`` for a loss name."""
    if name not in LOSSES:
        raise ConfigError(f"unknown GAN loss '{name}' (expected one of {', '.join(LOSSES)})")
    return LOSSES[name]
