"""Blur, JPEG and resampling applied to a detector's training images.

``Degradation`` treats both classes alike; ``Compression`` JPEG-compresses a share of the
generated images only (the real side of a survey is usually JPEG already).

Wang et al. (2020, "CNN-generated images are surprisingly easy to spot... for now") found that
a detector trained with random blur and JPEG on *both* sides stops keying on the fine
high-frequency fingerprint of one generator and transfers to others. Applied once per image
at assembly (deterministic from the seed), after the common resampling chain, so the stored
PNGs carry them and every training epoch sees the same degraded copy.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Degradation:
    """Each step fires independently with its probability."""

    p_blur: float = 0.5
    max_sigma: float = 2.0  # Gaussian blur, sigma ~ U(0.2, max_sigma) pixels
    p_jpeg: float = 0.5
    min_quality: int = 40  # JPEG quality ~ U(min_quality, 95)
    p_resample: float = 0.3
    min_scale: float = 0.5  # down to ~ U(min_scale, 0.9) of the side and back up

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """(3, S, S) uint8 -> (3, S, S) uint8."""
        from PIL import Image, ImageFilter

        size = image.shape[-1]
        pil = Image.fromarray(image.permute(1, 2, 0).numpy())
        if rng.random() < self.p_blur:
            pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, self.max_sigma))))
        if rng.random() < self.p_resample:
            small = max(4, round(size * float(rng.uniform(self.min_scale, 0.9))))
            pil = pil.resize((small, small), Image.Resampling.BILINEAR).resize(
                (size, size), Image.Resampling.BILINEAR)
        if rng.random() < self.p_jpeg:
            pil = jpeg_round_trip(pil, int(rng.integers(self.min_quality, 96)))
        return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).contiguous()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Compression:
    """A JPEG round-trip of a ``share`` of the *generated* images, at their native size.

    Why: real survey cutouts are JPEGs, generated images usually lossless, so a detector can
    learn "no JPEG noise = fake"; a fake saved as JPEG then passes for real (quality 75 took
    the held-out renderer from 0.97 to 0.50 accuracy, docs/detector.md). Compressing a share
    of the fakes before the common resampling chain, as a user's copies of a generator's output
    would be, leaves JPEG with no side to point to. Applied at assembly and kept as the
    stored image (thresholds and the statistics head see it too): a compressed fake is a fake
    as it will arrive, not a training-only distortion.
    """

    share: float = 0.5
    min_quality: int = 50  # quality ~ U(min_quality, max_quality)
    max_quality: int = 95

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"the share of compressed fakes must be in [0, 1], got {self.share}")
        if not 1 <= self.min_quality <= self.max_quality <= 100:
            raise ValueError(f"JPEG qualities must satisfy 1 <= {self.min_quality} <= "
                             f"{self.max_quality} <= 100")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 -> the same, JPEG round-tripped with probability ``share``."""
        from PIL import Image

        if rng.random() >= self.share:
            return image
        quality = int(rng.integers(self.min_quality, self.max_quality + 1))
        return np.asarray(jpeg_round_trip(Image.fromarray(image), quality)).copy()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def jpeg_round_trip(pil: Any, quality: int) -> Any:
    """A PIL image encoded as JPEG at ``quality`` and decoded again (RGB)."""
    from PIL import Image

    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
