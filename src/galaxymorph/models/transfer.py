"""Transfer-learning policies: which parameters of a built model train, and at what rate.

* ``linear-probe``: only the logits layer (``spec.head``) trains.
* ``last-block``: the last backbone block and the whole classifier train (the seed's
  "last conv block + dense layers" fine-tuning), all at the base learning rate.
* ``full``: everything trains; the backbone at ``lr * backbone_lr_mult``.

Frozen BatchNorm layers still update their running statistics in ``train()`` mode; call
:func:`freeze_norm_stats` after ``model.train()`` to keep them fixed as well.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from galaxymorph.errors import ConfigError
from galaxymorph.models.registry import model_spec, tagged_module

POLICIES = ("linear-probe", "last-block", "full")


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(
            f"unknown transfer policy {policy!r}; choose one of: {', '.join(POLICIES)}"
        )


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _named_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    # Names relative to the tagged model, so that spec names apply inside wrappers too.
    return list(tagged_module(model).named_parameters())


def trainable_prefixes(model: nn.Module, policy: str) -> tuple[str, ...]:
    """Module names whose parameters ``policy`` trains (``()`` meaning all for ``full``)."""
    _check_policy(policy)
    spec = model_spec(model)
    if policy == "linear-probe":
        return (spec.head,)
    if policy == "last-block":
        return (*spec.blocks[-1], *spec.classifier)
    return ()


def apply_policy(model: nn.Module, policy: str) -> nn.Module:
    """Set ``requires_grad`` of every parameter according to ``policy``; returns ``model``."""
    prefixes = trainable_prefixes(model, policy)
    for name, param in _named_params(model):
        param.requires_grad_(policy == "full" or _under(name, prefixes))
    return model


def param_groups(
    model: nn.Module, policy: str, lr: float, backbone_lr_mult: float = 0.1
) -> list[dict[str, Any]]:
    """Apply ``policy`` and return optimizer param groups (``params``, ``lr``, ``name``).

    Groups: ``head`` (the classifier) at ``lr``; then ``last-block`` at ``lr`` or, for
    ``full``, ``backbone`` at ``lr * backbone_lr_mult``. Frozen parameters are left out.
    """
    if not lr > 0:
        raise ConfigError(f"learning rate must be > 0, got {lr!r}")
    if not backbone_lr_mult > 0:
        raise ConfigError(f"backbone_lr_mult must be > 0, got {backbone_lr_mult!r}")
    apply_policy(model, policy)
    spec = model_spec(model)
    head_prefixes = (spec.head,) if policy == "linear-probe" else spec.classifier
    head, rest = [], []
    for name, param in _named_params(model):
        if param.requires_grad:
            (head if _under(name, head_prefixes) else rest).append(param)
    groups: list[dict[str, Any]] = [{"name": "head", "params": head, "lr": lr}]
    if policy == "last-block":
        groups.append({"name": "last-block", "params": rest, "lr": lr})
    elif policy == "full":
        groups.append({"name": "backbone", "params": rest, "lr": lr * backbone_lr_mult})
    return [g for g in groups if g["params"]]


def freeze_norm_stats(model: nn.Module) -> None:
    """Put normalisation layers whose parameters are all frozen into eval mode.

    Call after ``model.train()``: a linear probe should not drift the backbone's BN statistics.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
