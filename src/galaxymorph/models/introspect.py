"""Uniform access to the parts of any registry model: head, blocks, features, Grad-CAM layer.

Used by transfer policies, by FID on classifier features and by Grad-CAM, so none of them
needs to know whether a model came from torchvision, timm or :mod:`custom_cnn`.
"""

from __future__ import annotations

import torch
from torch import nn

from galaxymorph.models.registry import model_spec, tagged_module


def _module(model: nn.Module, name: str) -> nn.Module:
    return tagged_module(model).get_submodule(name)


def head_module(model: nn.Module) -> nn.Linear:
    """The final ``nn.Linear`` that produces the logits."""
    head = _module(model, model_spec(model).head)
    assert isinstance(head, nn.Linear), f"head of {model_spec(model).name} is not nn.Linear"
    return head


def feature_dim(model: nn.Module) -> int:
    """``D`` of :func:`features`: the width of the penultimate layer."""
    return head_module(model).in_features


def block_modules(model: nn.Module) -> list[list[nn.Module]]:
    """The backbone stages in forward order; each is a group of modules."""
    return [[_module(model, n) for n in block] for block in model_spec(model).blocks]


def gradcam_target_layer(model: nn.Module, image_size: int | None = None, min_cells: int = 6) -> nn.Module:
    """The Grad-CAM target layer: the last convolutional layer/block (the usual choice), or,
    given the input ``image_size``, the deepest stage whose map is still ``min_cells`` across.

    A map is only as sharp as its layer: MobileNetV2's last stage is 3x3 at 96 px, one cell
    for the galaxy and eight for the sky, so at small inputs an earlier stage (6x6 there, the
    end of the stride-16 stage; shallower stages map sky noise more than shape)
    is the one that can show which part of the galaxy mattered.
    """
    spec = model_spec(model)
    last = _module(model, spec.gradcam_layer)
    if image_size is None:
        return last
    candidates = [last] + [_module(model, block[-1]) for block in reversed(spec.blocks)]
    sizes: dict[int, int] = {}

    def record(module: nn.Module, _inputs: object, out: object) -> None:  # None: output unchanged
        sizes[id(module)] = out.shape[-1] if isinstance(out, torch.Tensor) and out.dim() == 4 else 0

    hooks = [m.register_forward_hook(record) for m in candidates]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    for module in candidates:
        if sizes.get(id(module), 0) >= min_cells:
            return module
    return max(candidates, key=lambda m: sizes.get(id(m), 0))


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features ``(N, D)``: the input of the logits layer for images ``x``.

    Runs the whole forward pass of ``model`` (a wrapper's normalisation included) with a hook
    on the head (an ensemble concatenates its members'); the caller chooses ``eval()`` and ``torch.no_grad()`` (dropout before the head
    is active in train mode).
    """
    from galaxymorph.models.ensemble import GalaxyEnsemble

    if isinstance(model, GalaxyEnsemble):  # one feature vector: the members' side by side
        return torch.cat([features(m, x) for m in model.members], dim=1)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0])

    handle = head_module(model).register_forward_pre_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"head of {model_spec(model).name} ran {len(captured)} times")
    return captured[0].flatten(1)
