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


class FeatureTap(nn.Module):
    """``net`` returning ``(logits, features)``: the features are the input of its head(s)
    (an ensemble's members' side by side, in member order), taken in the same forward pass.

    A module rather than a function so that the ONNX export traces it: the cached graph of a
    model then has both outputs, and an embedding costs no pass of its own. The head's input
    rather than anything sized by the classes, so a model whose head answers other questions
    keeps the same representation.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        from galaxymorph.models.ensemble import members_of

        self.net = net
        self.heads = [head_module(m) for m in members_of(net)]  # ModelError without a spec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            captured.append(inputs[0])

        handles = [h.register_forward_pre_hook(hook) for h in self.heads]
        try:
            logits = self.net(x)
        finally:
            for h in handles:
                h.remove()
        if len(captured) != len(self.heads):
            raise RuntimeError(f"{len(self.heads)} head(s) ran {len(captured)} times")
        return logits, torch.cat([c.flatten(1) for c in captured], dim=1)


def has_features(model: nn.Module) -> bool:
    """Whether :class:`FeatureTap` can take ``model``'s features (a registry model's head)."""
    from galaxymorph.errors import ModelError
    from galaxymorph.models.ensemble import members_of

    try:
        return all(isinstance(_module(m, model_spec(m).head), nn.Linear) for m in members_of(model))
    except (ModelError, AttributeError):
        return False


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features ``(N, D)``: the input of the logits layer for images ``x``.

    Runs the whole forward pass of ``model`` (a wrapper's normalisation included) once, through
    :class:`FeatureTap`; the caller chooses ``eval()`` and ``torch.no_grad()`` (dropout before
    the head is active in train mode).
    """
    return FeatureTap(model)(x)[1]
