"""Image statistics that real survey images share and many generators do not: the noise.

A survey cutout carries sky noise and its spectrum (photon noise, the detector, the JPEG of the
archive) even after the detector's antialiased resampling; a procedural render, a PCA
reconstruction or an upsampling generator carries its own, or none. Five numbers per image,
all of the (resampled) grey and colour-difference images' high frequencies:

1. log std of the high-pass residual (image minus a 1 px Gaussian blur) in the border, where
   sky dominates;
2. the same inside the border;
3. log median absolute high-pass value in the border (robust to a star);
4. log of the power spectrum's share above a quarter of the sampling rate;
5. log std of the red-minus-blue high-pass residual in the border (colour noise).

They feed a second :class:`~galaxymorph.detection.typicality.Typicality` (distance to the real
training images, percentile among real calibration images): no generated image is involved, so
it flags smooth or noiseless generators that the network's features may rank as typical.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

STATISTICS_FILE = "typicality_statistics.npz"
#: Names of the columns of :func:`noise_statistics`, in order.
STATISTICS = ("border_highpass_std", "inner_highpass_std", "border_highpass_mad",
              "high_frequency_power", "border_colour_highpass_std")
_EPS = 1e-3


def noise_statistics(batch: torch.Tensor) -> np.ndarray:
    """(N, 5) statistics of a uint8 batch (N, 3, S, S) already through the detector's chain."""
    x = batch.detach().cpu().numpy().astype(np.float64)
    out = np.empty((len(x), len(STATISTICS)))
    for n, img in enumerate(x):
        out[n] = _one(img)
    return out


def _one(img: np.ndarray) -> np.ndarray:
    grey = img.mean(axis=0)
    h, w = grey.shape
    b = max(2, min(h, w) // 8)
    border = np.zeros((h, w), dtype=bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    hp = grey - ndimage.gaussian_filter(grey, 1.0)
    colour = img[0] - img[2]
    chp = colour - ndimage.gaussian_filter(colour, 1.0)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx)
    high = power[radius >= 0.25].sum() / max(power[(radius > 0) & (radius < 0.25)].sum(), 1e-12)
    return np.array([np.log(hp[border].std() + _EPS), np.log(hp[~border].std() + _EPS),
                     np.log(np.median(np.abs(hp[border])) + _EPS), np.log(high + 1e-12),
                     np.log(chp[border].std() + _EPS)])
