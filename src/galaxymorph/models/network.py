"""The network galaxymorph trains and ships: a registry backbone behind fixed input normalisation.

Putting normalisation inside the module means a checkpoint, an ONNX export and the web app
all take the same input (RGB floats in ``[0, 1]``), so preprocessing cannot drift between them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from galaxymorph.models.registry import IMAGENET_MEAN, IMAGENET_STD
from galaxymorph.models.views import check_view, log_spectrum, view_channels


class GalaxyNet(nn.Module):
    """``backbone`` behind input normalisation and the input ``view`` (see
    :mod:`galaxymorph.models.views`): ``pixels`` (normalised RGB), ``frequency`` (their
    whitened log spectrum) or ``both`` (6 channels: pixels, then spectrum)."""

    def __init__(self, backbone: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 view: str = "pixels"):
        super().__init__()
        self.backbone = backbone
        self.view = check_view(view)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.view == "pixels":
            return self.backbone(self.normalize(x))
        if self.view == "frequency":
            return self.backbone(log_spectrum(x))
        return self.backbone(torch.cat([self.normalize(x), log_spectrum(x)], dim=1))


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


def build_network(name: str, num_classes: int, pretrained: bool = False, view: str = "pixels",
                  **kwargs) -> nn.Module:
    """A :class:`GalaxyNet` around registry model ``name`` with input ``view`` (its stem takes
    :func:`view_channels` channels; pretrained RGB stems are adapted as timm does), or the
    registered composite network ``name`` (``"ensemble"``: :mod:`galaxymorph.models.ensemble`)."""
    from galaxymorph.errors import ModelError
    from galaxymorph.models.registry import create_model, get_model_info

    if name in _COMPOSITES:
        if view != "pixels":  # its members carry their own views
            raise ModelError(f"network {name!r} takes no input view (got {view!r})")
        return _COMPOSITES[name](num_classes, **kwargs)
    info = get_model_info(name)  # timm models expect their own mean/std, torchvision ImageNet's
    if view_channels(view) != 3:
        kwargs = {**kwargs, "in_chans": view_channels(view)}
    return GalaxyNet(create_model(name, num_classes, pretrained=pretrained, **kwargs),
                     mean=info.mean, std=info.std, view=view)
