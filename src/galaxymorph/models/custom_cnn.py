"""The seed report's custom CNNs, as one parameterised :class:`ConvNet`.

The seed grew a plain CNN from 2 to 6 conv layers (``cnn2`` ... ``cnn6``, dense 120-84 head),
then settled on 4 wider conv layers with a dropout head (``cnn4-wide``). Its second study used a
small real-vs-synthetic detector (``seed-detector``). Channel counts and kernel sizes below are
read off the parameter counts in the seed's model summaries.

Keras flattened the last feature map, which ties the dense layer to one input size. Here an
``nn.AdaptiveAvgPool2d`` to the grid the seed's flatten saw at its nominal ``image_size`` sits
before the flatten: at that size the network is the seed's, at any other size it still runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from galaxymorph.models.registry import ModelSpec, register_model


def _as_tuple(value: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n:
        raise ValueError(f"{what}: expected {n} values, got {len(values)}")
    return values


def feature_grid(image_size: int, kernel_sizes: Sequence[int], padding: str = "same") -> int:
    """Side of the last feature map of a :class:`ConvNet` for a square ``image_size`` input."""
    size = image_size
    for k in kernel_sizes:
        if padding == "valid":
            size -= k - 1
        size = -(-size // 2)  # 2x2 max pool, ceil_mode=True
    return max(size, 1)


class ConvNet(nn.Module):
    """``len(channels)`` x (conv k x k + ReLU + 2x2 max pool), adaptive pool, dense head.

    Module names: ``features.<i>.conv/act/pool``, ``pool``, ``classifier.<j>`` (last is the
    logits layer). Pooling uses ``ceil_mode`` so that small inputs never shrink to nothing.
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int],
        kernel_sizes: int | Sequence[int] = 3,
        dense: Sequence[int] = (120, 84),
        dropout: float = 0.0,
        pool_grid: int = 4,
        in_chans: int = 3,
        padding: str = "same",
    ):
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        kernels = _as_tuple(kernel_sizes, len(channels), "kernel_sizes")
        blocks = []
        prev = in_chans
        for out, k in zip(channels, kernels, strict=True):
            # Integer padding k//2 equals 'same' for odd k and exports cleanly to ONNX.
            pad = k // 2 if padding == "same" else 0
            blocks.append(
                nn.Sequential(
                    OrderedDict(
                        conv=nn.Conv2d(prev, out, k, padding=pad),
                        act=nn.ReLU(),
                        pool=nn.MaxPool2d(2, ceil_mode=True),
                    )
                )
            )
            prev = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_grid)
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        width = prev * pool_grid * pool_grid
        for units in dense:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))

    def spec(self, name: str) -> ModelSpec:
        n = len(self.features)
        return ModelSpec(
            name=name,
            head=f"classifier.{len(self.classifier) - 1}",
            classifier=("classifier",),
            blocks=tuple((f"features.{i}",) for i in range(n)),
            # Pre-pool activation of the last block: twice the resolution of its output.
            gradcam_layer=f"features.{n - 1}.act",
            first_conv="features.0.conv",
        )


@dataclass(frozen=True)
class _CNNConfig:
    name: str
    description: str
    channels: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    dense: tuple[int, ...]
    image_size: int
    dropout: float = 0.0
    padding: str = "same"
    family: str = "custom-cnn"


_CONFIGS = (
    _CNNConfig(
        "cnn2", "seed CNN, 2 conv layers (5x5), dense 120-84", (3, 8), (5, 5), (120, 84), 256
    ),
    _CNNConfig(
        "cnn3",
        "seed CNN, 3 conv layers (5x5), dense 120-84",
        (6, 16, 32),
        (5, 5, 5),
        (120, 84),
        256,
    ),
    _CNNConfig(
        "cnn5",
        "seed CNN, 5 conv layers (5x5/3x3), dense 120-84",
        (3, 8, 16, 32, 64),
        (5, 3, 5, 3, 5),
        (120, 84),
        256,
    ),
    _CNNConfig(
        "cnn6",
        "seed CNN, 6 conv layers (5x5/3x3), dense 120-84",
        (3, 8, 16, 32, 64, 128),
        (5, 3, 5, 3, 5, 3),
        (120, 84),
        256,
    ),
    _CNNConfig(
        "cnn4-wide",
        "seed's final CNN: 4 conv layers 32/64/128/256 (3x3), dense 512-256 with dropout",
        (32, 64, 128, 256),
        (3, 3, 3, 3),
        (512, 256),
        64,
        dropout=0.5,
    ),
    _CNNConfig(
        "seed-detector",
        "seed real-vs-synthetic detector: conv 32, conv 64 (3x3, valid), dense 128",
        (32, 64),
        (3, 3),
        (128,),
        150,
        padding="valid",
        family="detector",
    ),
)


def _register(cfg: _CNNConfig) -> None:
    @register_model(
        cfg.name,
        family=cfg.family,
        description=cfg.description,
        default_image_size=cfg.image_size,
        pretrained_ok=False,
    )
    def build(
        num_classes: int,
        pretrained: bool = False,
        in_chans: int = 3,
        image_size: int | None = None,
        dropout: float | None = None,
        pool_grid: int | None = None,
    ) -> nn.Module:
        """``image_size`` sets the nominal input (and so the dense width) unless ``pool_grid``."""
        grid = pool_grid or feature_grid(
            image_size or cfg.image_size, cfg.kernel_sizes, cfg.padding
        )
        model = ConvNet(
            num_classes,
            cfg.channels,
            cfg.kernel_sizes,
            cfg.dense,
            dropout=cfg.dropout if dropout is None else dropout,
            pool_grid=grid,
            in_chans=in_chans,
            padding=cfg.padding,
        )
        model.galaxymorph_spec = model.spec(cfg.name)
        return model


for _cfg in _CONFIGS:
    _register(_cfg)
