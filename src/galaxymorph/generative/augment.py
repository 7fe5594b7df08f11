"""Augmentations for GAN training on small data.

Two kinds, for two reasons:

* :func:`random_symmetry` acts on *real* images only: a galaxy has no preferred orientation,
  so the 8 symmetries of the square are new, equally valid real images and the generator
  should learn them too (with label swaps for mirror-paired classes, as in ``transforms``).
* :func:`diff_augment` (Zhao et al. 2020, "Differentiable Augmentation") acts on *everything
  the discriminator sees*, real and fake, with gradients flowing through to the generator.
  Because both sides are transformed alike the generator is not pushed to produce augmented
  images, but the discriminator cannot memorise the ~100 images of a minority class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from galaxymorph.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> a tuple; ``""``/``"none"``/None -> no augmentation."""
    if not policy or policy == "none":
        return ()
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ConfigError(f"unknown DiffAugment policy {bad} (expected a comma list of "
                          f"{', '.join(POLICIES)}, or 'none')")
    return parts


def random_symmetry(x: torch.Tensor, y: torch.Tensor, n_sym: int = 8,
                    swap: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random element of the square's symmetry group per image (batched, no Python loop).

    Every element is a composition of a transpose and flips of rows and columns (each a
    reflection). An odd number of reflections is a mirror image, which remaps labels by
    ``swap`` (clockwise <-> anticlockwise); ``n_sym=4`` (rotations only) keeps it even.
    """
    if n_sym not in (4, 8):
        raise ConfigError(f"n_sym must be 4 (rotations) or 8 (rotations and mirrors), got {n_sym}")
    n = x.shape[0]
    bits = torch.randint(2, (3, n))
    t, fr, fc = bits[0].bool(), bits[1].bool(), bits[2].bool()
    if n_sym == 4:
        fr = t ^ fc  # an even number of reflections: a rotation
    view = (n,) + (1,) * (x.ndim - 1)
    x = torch.where(t.view(view).to(x.device), x.transpose(-1, -2), x)  # square images
    x = torch.where(fr.view(view).to(x.device), x.flip(-2), x)
    x = torch.where(fc.view(view).to(x.device), x.flip(-1), x)
    mirror = t ^ fr ^ fc
    if swap is not None and bool(mirror.any()):
        table = torch.as_tensor(swap, dtype=y.dtype, device=y.device)
        y = torch.where(mirror.to(y.device), table[y], y)
    return x, y


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the policy's random, differentiable transforms to images in ``[-1, 1]``."""
    for name in policy:
        x = _OPS[name](x)
    return x


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    # Shift by up to 1/8 of the side, filling with empty (black) sky rather than grey.
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy + ty + 1, 0, h + 1)
    gx = torch.clamp(gx + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=-1.0)
    return padded.permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gy = torch.clamp(gy + oy - ch // 2, 0, h - 1)
    gx = torch.clamp(gx + ox - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}
