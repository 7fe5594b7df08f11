"""Blur, JPEG and resampling applied to both classes of a detector's training images.

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
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=int(rng.integers(self.min_quality, 96)))
            buf.seek(0)
            pil = Image.open(buf).convert("RGB")
        return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).contiguous()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
