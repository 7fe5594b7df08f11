"""Image statistics that real survey images share and many generators do not: the noise.

A survey cutout carries sky noise and its spectrum (photon noise, the detector, the JPEG of the
archive) even after the detector's antialiased resampling; a procedural render, a PCA
reconstruction or an upsampling generator carries its own, or none. A colour cutout is also
made of exposures in *separate bands* (SDSS g, r, i), so the noise of its three channels is
largely independent, where a generator's channels are usually made together. Sixteen numbers
per image, all of the (resampled) image's high frequencies (the residual of a 1 px Gaussian
blur) and its sky, where the border stands for the sky:

1. log std of the grey residual in the border;
2. the same inside the border;
3. log median absolute grey residual in the border (robust to a star);
4. log of the power spectrum's share above a quarter of the sampling rate;
5. log std of the red-minus-blue residual in the border (colour noise);
6-8. log std of each channel's residual in the border (noise per band);
9-11. correlation of the residuals of channel pairs (R-G, G-B, R-B) in the border;
12-13. the grey residual's correlation with itself 1 and 2 px away (how resampling and the
   PSF correlate the noise);
14. log of the border's median level (the sky the survey's stretch leaves);
15. share of border pixel values at 0 (sky clipped by the stretch);
16. skewness of the border's grey levels.

Detectors fitted before the last eleven existed keep using the first five (the reference's
width says how many). They feed a second :class:`~galaxymorph.detection.typicality.Typicality`
(distance to the real training images, percentile among real calibration images): no
generated image is involved, so it flags smooth or noiseless generators that the network's
features may rank as typical.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

STATISTICS_FILE = "typicality_statistics.npz"
#: Names of the columns of :func:`noise_statistics`, in order.
STATISTICS = ("border_highpass_std", "inner_highpass_std", "border_highpass_mad",
              "high_frequency_power", "border_colour_highpass_std",
              "border_highpass_std_r", "border_highpass_std_g", "border_highpass_std_b",
              "highpass_corr_rg", "highpass_corr_gb", "highpass_corr_rb",
              "highpass_autocorr_1", "highpass_autocorr_2",
              "sky_level", "sky_clipped", "sky_skewness")
#: Column counts of the statistics sets detectors have been fitted with (the first 5 before
#: the per-band noise, then all of them).
KNOWN_WIDTHS = (5, len(STATISTICS))
_EPS = 1e-3


def noise_statistics(batch: torch.Tensor, width: int = len(STATISTICS)) -> np.ndarray:
    """(N, width) statistics of a uint8 batch (N, 3, S, S) already through the detector's
    chain: the first ``width`` columns of :data:`STATISTICS`."""
    if width not in KNOWN_WIDTHS:
        raise ValueError(f"no statistics set has {width} columns (known: {KNOWN_WIDTHS})")
    x = batch.detach().cpu().numpy().astype(np.float64)
    out = np.empty((len(x), width))
    for n, img in enumerate(x):
        out[n] = _one(img, width)
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 1 for a constant input (no noise at all: as made, not measured)."""
    sa, sb = a.std(), b.std()
    if sa < 1e-9 or sb < 1e-9:
        return 1.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _one(img: np.ndarray, width: int) -> np.ndarray:
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
    first = [np.log(hp[border].std() + _EPS), np.log(hp[~border].std() + _EPS),
             np.log(np.median(np.abs(hp[border])) + _EPS), np.log(high + 1e-12),
             np.log(chp[border].std() + _EPS)]
    if width == 5:
        return np.array(first)
    bands = [c[border] for c in (img - ndimage.gaussian_filter(img, (0, 1.0, 1.0)))]
    lags = []
    for lag in (1, 2):  # horizontal and vertical pairs, both pixels in the border
        pairs = [(hp[:, :-lag][border[:, :-lag] & border[:, lag:]],
                  hp[:, lag:][border[:, :-lag] & border[:, lag:]]),
                 (hp[:-lag][border[:-lag] & border[lag:]], hp[lag:][border[:-lag] & border[lag:]])]
        lags.append(_corr(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])))
    sky = grey[border]
    skew = float(((sky - sky.mean()) ** 3).mean() / (sky.std() ** 3 + 1e-9))
    rest = [*(np.log(v.std() + _EPS) for v in bands),
            _corr(bands[0], bands[1]), _corr(bands[1], bands[2]), _corr(bands[0], bands[2]),
            *lags, np.log(np.median(sky) + 1.0), float((img[:, border] <= 0.5).mean()), skew]
    return np.array(first + rest)
