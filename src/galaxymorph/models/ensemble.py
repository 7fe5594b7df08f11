"""Several trained networks behind one input: the mean of their logits.

An ensemble of independently trained members is the cheapest reliable gain in accuracy and
calibration a classifier can get. It is an ordinary ``nn.Module`` with the same input as one
:class:`~galaxymorph.models.network.GalaxyNet` (RGB floats in ``[0, 1]``), so TTA, temperature
scaling, ONNX export and the web app treat it like any other network. Averaging logits rather
than probabilities keeps it one differentiable, exportable graph; the temperature fitted on top
absorbs the difference.
"""

from __future__ import annotations

import torch
from torch import nn

from galaxymorph.models.network import build_network, register_network

ARCHITECTURE = "ensemble"


class GalaxyEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def members_of(net: nn.Module) -> list[nn.Module]:
    """The member networks of an ensemble, or ``[net]`` for a single network."""
    return list(net.members) if isinstance(net, GalaxyEnsemble) else [net]


@register_network(ARCHITECTURE)
def build_ensemble(num_classes: int, members: list[dict]) -> GalaxyEnsemble:
    """Rebuild an ensemble from its card's ``model_kwargs["members"]`` (architecture + kwargs)."""
    return GalaxyEnsemble([build_network(m["architecture"], num_classes, pretrained=False,
                                         **m.get("model_kwargs", {})) for m in members])
