"""Class-conditional DCGAN-style generator and spectral-norm projection discriminator.

Sized for CPU training: transposed 4x4 stride-2 convolutions (about half the cost of
upsample + 3x3 conv) and a channel width that halves at each doubling of resolution, so a
64 px generator is ~25 M multiply-adds per image. Conditioning follows Miyato & Koyama
(2018): class-conditional BatchNorm in the generator (a per-class gain and bias, so each class
can reshape every layer's activations) and a projection discriminator (the class embedding's
inner product with the image features), which is much more stable than feeding the label in
as an extra input channel.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from galaxymorph.errors import ConfigError

IMAGE_SIZES = (32, 64, 128)
MAX_CHANNELS = 512


def _check_size(image_size: int) -> int:
    if image_size not in IMAGE_SIZES:
        raise ConfigError(f"GAN image size must be one of {IMAGE_SIZES}, got {image_size}")
    return int(math.log2(image_size // 4))  # number of 2x up/down-sampling blocks


def _channels(base: int, n_blocks: int) -> list[int]:
    """Widths from the 4x4 stage up to half resolution: base * 2^(n-2), ..., 2 base, base."""
    return [min(base * 2 ** (n_blocks - 1 - i), MAX_CHANNELS) for i in range(n_blocks)]


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; the gain and bias are looked up per class."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.bn(x)
        return out * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.norm = ConditionalBatchNorm2d(cin, num_classes)
        self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.norm(x, y)))


class Generator(nn.Module):
    """``(z (N, z_dim), y (N,) class index) -> image (N, 3, S, S) in [-1, 1]``."""

    def __init__(self, num_classes: int, image_size: int = 64, z_dim: int = 128,
                 base_channels: int = 32, embed_dim: int = 32):
        super().__init__()
        n_blocks = _check_size(image_size)
        self.num_classes, self.image_size, self.z_dim = num_classes, image_size, z_dim
        ch = _channels(base_channels, n_blocks)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.fc = nn.Linear(z_dim + embed_dim, ch[0] * 16)
        self.blocks = nn.ModuleList(_UpBlock(ch[i], ch[i + 1], num_classes)
                                    for i in range(n_blocks - 1))
        self.to_rgb = _UpBlock(ch[-1], 3, num_classes)  # the last doubling outputs RGB (DCGAN)
        self._c0 = ch[0]

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(-1, self._c0, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.to_rgb(h, y))


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the feature spread across each group of ``group`` consecutive samples as one more
    channel (Karras et al. 2018): a collapsed generator's batch has no spread, so the
    discriminator can see mode collapse that no single image shows. Groups are contiguous, so
    a ``cat([real, fake])`` batch with sizes divisible by ``group`` never mixes the two."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    y = x.view(n // g, g, c, h, w)
    spread = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
    return torch.cat([x, spread.repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    """``(image (N, 3, S, S) in [-1, 1], y (N,)) -> score (N,)``; higher means "real"."""

    def __init__(self, num_classes: int, image_size: int = 64, base_channels: int = 32,
                 mbstd_group: int = 4):
        super().__init__()
        n_blocks = _check_size(image_size)
        ch = list(reversed(_channels(base_channels, n_blocks)))  # base, 2 base, ...
        layers: list[nn.Module] = []
        cin = 3
        for cout in ch:
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.1)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.mbstd_group = mbstd_group
        # One more 3x3 conv at 4x4 mixes spatial information (and the batch spread) before pooling.
        self.last = nn.Sequential(spectral_norm(nn.Conv2d(cin + 1, cin, 3, padding=1)), nn.LeakyReLU(0.1))
        self.linear = spectral_norm(nn.Linear(cin, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, cin))
        self.num_classes, self.image_size = num_classes, image_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``h`` (N, C) that the score and the projection read."""
        h = minibatch_std(self.body(x), self.mbstd_group)
        return self.last(h).sum(dim=(2, 3))  # global sum pooling (SNGAN)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
