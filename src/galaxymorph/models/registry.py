"""The model registry: one name -> one builder, like timm's ``create_model``.

Builders have the signature ``fn(num_classes, pretrained, in_chans=3, **kwargs) -> nn.Module``
and tag the model they return with a :class:`ModelSpec` (``model.galaxymorph_spec``), so that
transfer policies, feature extraction and Grad-CAM work the same way for every model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from galaxymorph.errors import ModelError

# torchvision's ImageNet statistics: the input normalisation of every model unless its weights
# were trained with others (timm's ``ModelInfo.mean``/``std``). Defined here only.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before it is built."""

    name: str
    family: str
    description: str
    default_image_size: int
    pretrained_ok: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class ModelSpec:
    """Where the parts of a built model are, as dotted module names (``model.get_submodule``).

    ``head`` is the final ``nn.Linear`` that gives the logits; ``classifier`` lists the modules
    after the backbone (the head included), e.g. VGG's three dense layers; ``blocks`` are the
    backbone stages in forward order, each a group of module names; ``gradcam_layer`` is the
    last convolutional block; ``first_conv`` is the stem convolution (for ``in_chans``).
    """

    name: str
    head: str
    classifier: tuple[str, ...]
    blocks: tuple[tuple[str, ...], ...]
    gradcam_layer: str
    first_conv: str


_REGISTRY: dict[str, tuple[ModelInfo, Builder]] = {}


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    default_image_size: int,
    pretrained_ok: bool,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Callable[[Builder], Builder]:
    """Decorator that registers ``fn(num_classes, pretrained, in_chans=3, **kwargs)`` as ``name``."""
    info = ModelInfo(name, family, description, default_image_size, pretrained_ok, mean, std)

    def decorate(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = (info, fn)
        return fn

    return decorate


def list_models() -> list[ModelInfo]:
    """All registered models, in registration order."""
    return [info for info, _ in _REGISTRY.values()]


def model_names() -> list[str]:
    return list(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; unknown names raise :class:`ModelError`."""
    return _lookup(name)[0]


def _lookup(name: str) -> tuple[ModelInfo, Builder]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY) or "(none)"
        raise ModelError(f"unknown model {name!r}; registered models: {known}") from None


def model_accepts(name: str, option: str) -> bool:
    """Whether the builder of ``name`` takes keyword ``option`` (e.g. ``image_size``)."""
    _, builder = _lookup(name)
    params = list(inspect.signature(builder).parameters.values())[2:]
    return any(p.name == option or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def create_model(name: str, num_classes: int, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build registry model ``name`` with a ``num_classes``-way head.

    ``pretrained=True`` starts the backbone from ImageNet weights (see
    :mod:`galaxymorph.models.weights` for where they are looked up); the head is always new
    unless ``num_classes`` matches the weights' head. Extra ``kwargs`` go to the builder
    (``in_chans``, ``image_size``, ``dropout``, ``weights_path``, ... depending on the family);
    a zoo model given ``weights_path`` loads that file even without ``pretrained=True``.
    """
    info, builder = _lookup(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(
            f"model {name!r}: num_classes must be a positive integer, got {num_classes!r}"
        )
    if pretrained and not info.pretrained_ok:
        raise ModelError(
            f"model {name!r} has no pretrained weights; build it with pretrained=False",
            hint="models with ImageNet weights: "
            + ", ".join(i.name for i in list_models() if i.pretrained_ok),
        )
    params = list(inspect.signature(builder).parameters.values())[2:]
    accepted = [p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ModelError(
                f"model {name!r} does not accept option(s) {', '.join(unknown)}; "
                f"it accepts: {', '.join(accepted)}"
            )
    model = builder(num_classes, pretrained, **kwargs)
    if not isinstance(getattr(model, "galaxymorph_spec", None), ModelSpec):
        raise RuntimeError(f"builder of {name!r} did not tag the model with a ModelSpec")
    return model


def tagged_module(model: nn.Module) -> nn.Module:
    """The module a registry builder tagged: ``model`` itself or the first submodule with a
    ``galaxymorph_spec`` (so wrappers such as a normalising ``GalaxyNet`` or ``torch.compile``
    work with the introspection and transfer helpers)."""
    for module in model.modules():
        if isinstance(getattr(module, "galaxymorph_spec", None), ModelSpec):
            return module
    raise ModelError(
        f"{type(model).__name__} was not built by galaxymorph.models.create_model "
        "(no galaxymorph_spec on it or its submodules)"
    )


def model_spec(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` a registry builder attached to ``model`` (or a submodule)."""
    return tagged_module(model).galaxymorph_spec
