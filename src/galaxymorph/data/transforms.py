"""Preprocessing and galaxy-aware augmentation.

Two stages, so that decoding happens once:

1. :func:`prepare` (deterministic): frame (a fixed centre crop, or ``framing="auto"``: a square
   of ``frame_radii`` Petrosian radii of the central galaxy, see :mod:`galaxymorph.data.framing`)
   + resize of a decoded image to a uint8 ``(3, S, S)`` tensor. Its output is what the decode
   cache stores (the cache key covers every field of :class:`Preprocessing`).
2. :class:`TrainAugment` (random, per sample): the 8 symmetries of the square (a galaxy has
   no preferred orientation), with label swaps for chirality-sensitive classes, plus the
   seed's zoom/shift. Normalisation happens inside the model (see ``models``), so exported
   models and the app take plain ``[0, 1]`` images.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from galaxymorph.errors import ConfigError

FRAMINGS = ("fixed", "auto")
#: Half-side of the auto frame in Petrosian radii: 1.25 frames the median GZ1 galaxy like the
#: central 35% crop that was chosen on GZ1's validation fold (median R_p = 0.148 of the field
#: on a 60-image sample: an informal check, not a benchmark).
DEFAULT_FRAME_RADII = 1.25


@dataclass(frozen=True)
class Preprocessing:
    """What every image goes through before the network; saved with each model."""

    image_size: int = 96
    # "fixed": keep ``crop`` of the shorter side around the centre; "auto": a square of
    # 2 x ``frame_radii`` Petrosian radii of the central galaxy (``crop`` when none is found).
    crop: float = 1.0
    framing: str = "fixed"
    frame_radii: float = DEFAULT_FRAME_RADII

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ConfigError(f"framing must be one of {FRAMINGS}, got '{self.framing}'")
        if not 0.25 <= self.frame_radii <= 20:
            raise ConfigError(f"frame_radii must be within 0.25..20 Petrosian radii, got {self.frame_radii}")
        if not 0.05 <= self.crop <= 1.0:
            raise ConfigError(f"crop must be a fraction of the image side in (0.05, 1], got {self.crop}")
        if not 8 <= self.image_size <= 1024:
            raise ConfigError(f"image_size must be within 8..1024 pixels, got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    def fixed(self, crop: float) -> Preprocessing:
        """The same input size with a fixed centre crop (``--crop`` at inference)."""
        return Preprocessing(self.image_size, crop, "fixed", self.frame_radii)

    def describe(self) -> str:
        if self.framing == "auto":
            return (f"auto framing: {2 * self.frame_radii:g} Petrosian radii of the central galaxy "
                    f"(centre {self.crop:.0%} when none is found), {self.image_size} px")
        what = "whole image" if self.crop >= 1 else f"centre {self.crop:.0%} of the image"
        return f"{what}, {self.image_size} px"


def crop_side(image: torch.Tensor, pre: Preprocessing) -> int:
    """Side in pixels of the square that ``pre`` keeps around the centre of a ``(3, H, W)`` image."""
    if pre.framing == "auto":
        from galaxymorph.data.framing import auto_crop_side

        return auto_crop_side(image.permute(1, 2, 0).numpy(), pre.frame_radii, pre.crop)
    h, w = image.shape[-2:]
    return max(1, round(min(h, w) * pre.crop))


def prepare(image: np.ndarray | torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Frame and resize an ``(H, W, 3)`` uint8 image to a ``(3, S, S)`` uint8 tensor."""
    if isinstance(image, np.ndarray):
        # torch needs a writable array with positive strides (h5py/memmaps hand out read-only
        # ones, flips give negative strides); copy only when one of those is missing.
        arr = np.ascontiguousarray(image, dtype=np.uint8)
        if not arr.flags.writeable:
            arr = arr.copy()
        t = torch.from_numpy(arr)
    else:
        t = image
    if t.ndim == 3 and t.shape[-1] == 3:
        t = t.permute(2, 0, 1)
    side = crop_side(t, pre)
    t = center_crop(t, side, side)
    if side != pre.image_size:
        t = resize(t, pre.image_size, pre.image_size)
    return t.contiguous()


# The two operations of every prediction, in plain torch: torchvision's functional module costs
# ~1.5 s to import (it pulls in torch._dynamo), a large share of a short `predict` run. They
# give torchvision's pixels exactly (its center_crop anchor, its antialiased bilinear resize, on
# uint8 natively where torch has the kernel); tests/test_transforms.py checks them against it.


def center_crop(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``height x width`` window of a ``(..., H, W)`` tensor (a view, no padding)."""
    h, w = t.shape[-2:]
    if not (0 < height <= h and 0 < width <= w):
        raise ValueError(f"crop {height}x{width} does not fit in a {h}x{w} image")
    top, left = round((h - height) / 2.0), round((w - width) / 2.0)  # torchvision rounds so
    return t[..., top:top + height, left:left + width]


@functools.cache
def _native_uint8_bilinear() -> bool:
    """Whether torch resizes uint8 images natively here (as torchvision decides it)."""
    import platform

    return (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            or platform.machine() in ("aarch64", "arm64"))


def resize(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear resize of a ``(..., C, H, W)`` uint8 or float tensor."""
    shape = t.shape
    c, h, w = shape[-3:]
    if (height, width) == (h, w):
        return t
    x = t.reshape(-1, c, h, w)
    if x.is_contiguous(memory_format=torch.channels_last) and x.shape[0] == 1 and x.numel() != x.stride(0):
        # A single channels-last image: restride so interpolate keeps channels-last (the uint8
        # kernel then skips a repacking copy), as torchvision does.
        strides = list(x.stride())
        strides[0] = x.numel()
        x = x.as_strided((1, c, h, w), strides)
    cast = x.dtype == torch.uint8 and not (x.device.type == "cpu" and _native_uint8_bilinear())
    if cast or x.dtype not in (torch.uint8, torch.float32, torch.float64):
        dtype = x.dtype
        y = F.interpolate(x.float(), size=[height, width], mode="bilinear", align_corners=False,
                          antialias=True)
        x = (y.round_() if not dtype.is_floating_point else y).to(dtype)
    else:
        x = F.interpolate(x, size=[height, width], mode="bilinear", align_corners=False,
                          antialias=True)
    return x.reshape((*shape[:-3], c, height, width))


def zoom_field(image: np.ndarray, factor: float) -> np.ndarray:
    """The same ``(H, W, 3)`` cutout with everything ``factor`` times larger, same image size:
    ``factor < 1`` shrinks it and pads the border with the sky (the mean of the outer frame,
    per channel: resampling averages the sky, so its mean, not its median, is what it keeps); ``factor > 1`` enlarges it and crops to the centre. How another
    survey's pixel scale looks; used by benchmarks and tests of framing."""
    h, w = image.shape[:2]
    t = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    t = resize(t, nh, nw)
    if factor >= 1:
        return center_crop(t, h, w).permute(1, 2, 0).numpy().copy()
    b = max(1, min(h, w) // 8)
    frame = np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3),
                            image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)])
    out = np.empty_like(image)
    out[...] = np.round(frame.mean(axis=0)).astype(np.uint8)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = t.permute(1, 2, 0).numpy()
    return out


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[0, 1]`` (the models' input convention)."""
    return batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0..7) of the square's symmetry group: rotate by ``k % 4`` quarter turns,
    then mirror (left-right) when ``k >= 4``."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def is_mirror(k: int) -> bool:
    return k >= 4


def swap_table(num_classes: int, chiral_pairs: list[tuple[int, int]]) -> list[int]:
    """Label permutation that a mirror applies (identity when no class is chiral)."""
    table = list(range(num_classes))
    for a, b in chiral_pairs:
        table[a], table[b] = b, a
    return table


@dataclass(frozen=True)
class SurveyAugment:
    """How much training images vary to cover survey differences (all off by default).

    ``scale``: log-uniform zoom range (0.7, 1.4: another pixel scale, or a framing error);
    ``blur``: largest extra Gaussian PSF sigma in pixels of the network input; ``noise``:
    largest Gaussian noise sigma (fraction of full scale); ``colour``: per-band gain jitter
    (fraction); ``stretch``: gamma/asinh re-stretch strength (0.3: gamma in e^±0.3); ``jpeg``:
    lowest JPEG quality (0: off). Each effect is applied with probability ``p``.
    """

    scale: tuple[float, float] = (1.0, 1.0)
    blur: float = 0.0
    noise: float = 0.0
    colour: float = 0.0
    stretch: float = 0.0
    jpeg: int = 0
    p: float = 0.5
    #: Probability of a greyscale view (the luminance in all three bands): another survey's
    #: bands and colour balance differ (DECaLS composites g, r, z; SDSS g, r, i), while
    #: morphology lives in the light's distribution.
    grey: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.scale)
        if not 0.2 <= lo <= hi <= 5.0:
            raise ConfigError(f"scale range must satisfy 0.2 <= min <= max <= 5, got {self.scale}")
        for name in ("blur", "noise", "colour", "stretch"):
            if not 0 <= getattr(self, name) <= 5:
                raise ConfigError(f"augmentation '{name}' must be within 0..5, got {getattr(self, name)}")
        if not (self.jpeg == 0 or 5 <= self.jpeg <= 100):
            raise ConfigError(f"jpeg must be 0 (off) or a quality within 5..100, got {self.jpeg}")
        if not 0 <= self.p <= 1 or not 0 <= self.grey <= 1:
            raise ConfigError(f"augmentation probabilities must be within 0..1, got {self.p}, "
                              f"{self.grey}")

    @property
    def active(self) -> bool:
        return (tuple(self.scale) != (1.0, 1.0) or self.blur > 0 or self.noise > 0
                or self.colour > 0 or self.stretch > 0 or self.jpeg > 0 or self.grey > 0)


#: The survey augmentations of the built-in model (``--survey-augment``).
SURVEY_AUGMENT = SurveyAugment(scale=(0.7, 1.4), blur=1.0, noise=0.03, colour=0.1, stretch=0.3,
                               jpeg=40)


class TrainAugment:
    """Random symmetry + zoom/shift (+ mild brightness jitter) on a uint8 ``(3, S, S)`` tensor.

    ``chirality``: ``"swap"`` (mirror swaps the paired labels), ``"no-flip"`` (rotations only),
    or ``"ignore"`` (labels have no handedness). With chiral classes and ``"ignore"`` we
    refuse, since a flip would silently corrupt labels. ``seed`` gives a private random stream
    (reproducible in one process); without it the global torch RNG is used, which DataLoader
    seeds differently in each worker.
    """

    def __init__(self, num_classes: int, chiral_pairs: list[tuple[int, int]] | None = None,
                 chirality: str = "swap", zoom: float = 0.1, shift: float = 0.05,
                 brightness: float = 0.1, seed: int | None = None,
                 survey: SurveyAugment | None = None):
        chiral_pairs = chiral_pairs or []
        if chirality not in ("swap", "no-flip", "ignore"):
            raise ConfigError(f"chirality must be swap, no-flip or ignore, got '{chirality}'")
        if chiral_pairs and chirality == "ignore":
            raise ConfigError(f"classes {chiral_pairs} are mirror images of each other; flips would "
                              "corrupt their labels: use chirality 'swap' or 'no-flip'")
        if not (0 <= zoom < 1 and 0 <= shift < 1 and 0 <= brightness < 1):
            raise ConfigError(f"zoom, shift and brightness must be fractions in [0, 1), got "
                              f"{zoom}, {shift}, {brightness}")
        self.table = swap_table(num_classes, chiral_pairs)
        # Labels without handedness (and decision-tree targets, which are not class indices)
        # pass through a mirror unchanged.
        self.chiral = bool(chiral_pairs)
        self.n_sym = 4 if chirality == "no-flip" else 8
        self.zoom, self.shift, self.brightness = zoom, shift, brightness
        self.survey = survey if survey is not None and survey.active else None
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _uniform(self) -> float:
        """A number in [-1, 1)."""
        return float(torch.rand((), generator=self.generator).item()) * 2 - 1

    def _chance(self, p: float) -> bool:
        return float(torch.rand((), generator=self.generator).item()) < p

    def __call__(self, x: torch.Tensor, label: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2 import functional as TF  # training only: see resize()

        k = int(torch.randint(self.n_sym, (), generator=self.generator).item())
        x = dihedral(x, k)
        if is_mirror(k) and self.chiral:
            # A label may carry a multiple of C on top (its source's label-noise group, see
            # training.datamodule.encode_noise_group): swap the class, keep the rest.
            c = len(self.table)
            label = self.table[label % c] + label - label % c
        if self.zoom or self.shift:
            # Same law as v2.RandomAffine(translate=(shift, shift), scale=(1-zoom, 1+zoom)).
            h, w = x.shape[-2:]
            scale = 1.0 + self._uniform() * self.zoom
            tx = round(self._uniform() * self.shift * w)
            ty = round(self._uniform() * self.shift * h)
            x = TF.affine(x, angle=0.0, translate=[tx, ty], scale=scale, shear=[0.0, 0.0])
        if self.brightness:
            f = 1.0 + self._uniform() * self.brightness
            x = (x.float() * f).clamp_(0, 255).to(torch.uint8)
        if self.survey is not None:
            x = self._survey(x, self.survey)
        return x, label

    def _survey(self, x: torch.Tensor, a: SurveyAugment) -> torch.Tensor:
        """Pixel scale, PSF, stretch, colour, noise and compression of another survey."""
        import math

        from torchvision.transforms.v2 import functional as TF

        lo, hi = a.scale
        if hi > lo and self._chance(a.p):
            scale = math.exp(math.log(lo) + (self._uniform() + 1) / 2 * (math.log(hi) - math.log(lo)))
            # Shrinking uncovers the border: fill it with the sky (the image's edge colour).
            edge = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1).float()
            sky = edge.median(dim=1).values.tolist()
            x = TF.affine(x, angle=0.0, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
                          interpolation=TF.InterpolationMode.BILINEAR, fill=sky)
        y = x.float().div_(255.0)
        if a.blur > 0 and self._chance(a.p):
            sigma = 0.3 + (self._uniform() + 1) / 2 * a.blur
            k = 2 * math.ceil(2.5 * sigma) + 1
            y = TF.gaussian_blur(y, [k, k], [sigma, sigma])
        if a.stretch > 0 and self._chance(a.p):
            t = self._uniform() * a.stretch
            if self._chance(0.5):
                y = y.clamp_(0, 1).pow_(math.exp(t))  # gamma
            elif abs(t) > 1e-3:
                q = math.exp(3 * abs(t))  # asinh (t > 0: faint light up) or its inverse
                y = (torch.asinh(q * y) / math.asinh(q)) if t > 0 else torch.sinh(q * y) / math.sinh(q)
        if a.colour > 0 and self._chance(a.p):
            gains = 1.0 + a.colour * (torch.rand(3, 1, 1, generator=self.generator) * 2 - 1)
            y = y * gains
        if a.grey > 0 and self._chance(a.grey):
            y = (0.299 * y[0] + 0.587 * y[1] + 0.114 * y[2]).expand(3, -1, -1).clone()
        if a.noise > 0 and self._chance(a.p):
            sigma = (self._uniform() + 1) / 2 * a.noise
            y = y + sigma * torch.randn(y.shape, generator=self.generator)
        x = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        if a.jpeg and self._chance(a.p):
            from torchvision.io import decode_jpeg, encode_jpeg

            quality = round(a.jpeg + (self._uniform() + 1) / 2 * (95 - a.jpeg))
            x = decode_jpeg(encode_jpeg(x.contiguous(), quality=max(5, min(100, quality))))
        return x
