"""The network galaxymorph trains and ships: a registry backbone behind fixed input normalisation.

Putting normalisation inside the module means a checkpoint, an ONNX export and the web app
all take the same input (RGB floats in ``[0, 1]``), so preprocessing cannot drift between them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from galaxymorph.models.registry import IMAGENET_MEAN, IMAGENET_STD


class GalaxyNet(nn.Module):
    def __init__(self, backbone: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


NetworkBuilder = Callable[..., nn.Module]

# Networks that are not one registry backbone behind normalisation (an ensemble of trained
# networks): name -> ``fn(num_classes, **kwargs)``. Their modules register themselves here, so
# this module never imports them.
_COMPOSITES: dict[str, NetworkBuilder] = {}


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Decorator that makes ``build_network(name, ...)`` call ``fn(num_classes, **kwargs)``."""

    def decorate(fn: NetworkBuilder) -> NetworkBuilder:
        if name in _COMPOSITES:
            raise ValueError(f"network {name!r} is registered twice")
        _COMPOSITES[name] = fn
        return fn

    return decorate


def build_network(name: str, num_classes: int, pretrained: bool = False, **kwargs) -> nn.Module:
    """A :class:`GalaxyNet` around registry model ``name``, or the registered composite network
    ``name`` (``"ensemble"``: :mod:`galaxymorph.models.ensemble`)."""
    from galaxymorph.models.registry import create_model, get_model_info

    if name in _COMPOSITES:
        return _COMPOSITES[name](num_classes, **kwargs)
    info = get_model_info(name)  # timm models expect their own mean/std, torchvision ImageNet's
    return GalaxyNet(create_model(name, num_classes, pretrained=pretrained, **kwargs),
                     mean=info.mean, std=info.std)
