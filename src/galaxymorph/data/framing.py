"""Automatic framing: measure the central galaxy's extent from its light.

Surveys cut galaxies out at different scales (GZ1's 423 px field shows the galaxy in its
central third, GZ2's cutouts are scaled to the galaxy), so a fixed centre crop shows the same
galaxy large in one and tiny in another. :func:`petrosian_radius` measures a *Petrosian
radius* of the source at the centre: the radius where the surface brightness in an annulus
falls to ``ETA`` (0.2, the SDSS convention) of the mean surface brightness inside it. Being a
ratio of surface brightnesses, it does not depend on the image's depth, zero point or (to
first order) stretch, unlike an isophotal radius; it scales with the galaxy, which is what a
frame has to follow. Other sources (stars, neighbours) are masked out of the profile by a
simple threshold segmentation, so they do not inflate it. No photutils: the whole estimate is
a few numpy/scipy operations on a <= 128 px copy (cheap next to decoding a JPEG), which
matters because it runs on every image at training, prediction and in the app.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

#: Petrosian ratio that defines the radius (SDSS uses 0.2).
ETA = 0.2
#: Measurements run on a copy whose shorter side is at most this many pixels.
_WORK_SIDE = 128
#: Detection threshold above the sky, in units of the (smoothed) sky noise.
_NSIGMA = 3.0


def _work_copy(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Grey, block-averaged copy of an (H, W[, C]) image and its integer reduction factor.

    Sums in two passes over contiguous memory: the ``f`` rows of each block (each a run of
    ``W * C`` values), then the ``f * C`` adjacent values of each block's row. numpy's ``mean``
    over small axes was two thirds of the framing's cost on every decoded image; this takes
    half as long as the strided sums before it (8-bit pixels add up exactly: the same result).
    """
    if image.ndim == 2:
        image = image[..., None]
    h, w, c = image.shape
    f = max(1, min(h, w) // _WORK_SIDE)
    h, w = h // f * f, w // f * f
    n = c * f * f
    # 8-bit pixels add up exactly in integers (and faster than in floats).
    dtype = (np.float32 if image.dtype != np.uint8 else
             np.uint16 if 255 * n <= np.iinfo(np.uint16).max else np.uint32)
    x = np.ascontiguousarray(image[:h, :w]).reshape(h // f, f, w * c)
    rows = x[:, 0].astype(dtype)
    for k in range(1, f):
        rows += x[:, k]
    blocks = rows.reshape(h // f, w // f, f * c)
    acc = blocks[..., 0].copy()
    for k in range(1, f * c):
        acc += blocks[..., k]
    return acc.astype(np.float32) * np.float32(1.0 / n), f


@functools.lru_cache(maxsize=16)
def _geometry(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance of every pixel to the centre of an (h, w) image, and its 1-px annulus index:
    the same for every image of a survey's cutout size, so computed once per size."""
    yy, xx = np.indices((h, w))
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    bins = np.minimum(r.astype(np.int64), int(r.max()))
    r.flags.writeable = bins.flags.writeable = False
    return r, bins


def _sky(grey: np.ndarray) -> tuple[float, float]:
    """Median and robust (MAD) noise of the outer frame of the image, where sky dominates."""
    h, w = grey.shape
    b = max(1, min(h, w) // 8)
    border = np.concatenate([grey[:b].ravel(), grey[-b:].ravel(), grey[:, :b].ravel(),
                             grey[:, -b:].ravel()])
    med = float(np.median(border))
    return med, float(1.4826 * np.median(np.abs(border - med)))


def petrosian_radius(image: np.ndarray) -> float | None:
    """Petrosian radius (pixels of ``image``) of the source at the image centre, or ``None``
    when there is no such source (blank or sky-only images, a centre without light)."""
    grey, f = _work_copy(np.asarray(image))
    h, w = grey.shape
    if min(h, w) < 8:
        return None
    smooth = ndimage.gaussian_filter(grey, 1.0)
    # Sky from the smoothed copy: a stretched, clipped sky is skewed, and the median of its
    # raw pixels sits below the level that averaging (resampling, the profile) sees.
    sky, noise = _sky(smooth)
    # JPEG and 8-bit quantisation can make the sky perfectly flat: keep a floor of one count.
    mask = smooth > sky + max(_NSIGMA * noise, 1.0)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    r, bins = _geometry(h, w)
    # The central source: the segment containing the centre, else the one nearest to it
    # (within a tenth of the field: cutouts are centred on their target).
    central = labels[h // 2, w // 2]
    if central == 0:
        near = r < 0.1 * min(h, w)
        ids = labels[near & mask]
        if ids.size == 0:
            return None
        central = ids[np.argmin(r[near & mask])]
    segment = labels == central
    flux = grey - sky
    signal = float(flux[segment].sum())
    if signal < 5.0 * max(noise, 1.0) * np.sqrt(segment.sum()):
        return None  # a noise peak, not a galaxy
    use = ~mask | segment  # other sources are masked out of the profile
    kept, n_bins = bins[use], int(bins.max()) + 1
    ann_flux = np.bincount(kept, weights=flux[use], minlength=n_bins)
    ann_n = np.bincount(kept, minlength=n_bins)
    cum_flux, cum_n = np.cumsum(ann_flux), np.cumsum(ann_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (ann_flux / ann_n) / (cum_flux / cum_n)
    # Annuli that leave the field are incomplete; stop at the inscribed circle.
    rmax = int(min(h, w) / 2)
    # A sky level off by a fraction of the noise would keep the ratio from ever reaching ETA:
    # the profile also ends where the annulus fades into the noise.
    faded = ann_flux / np.maximum(ann_n, 1) < 0.5 * max(noise, 1.0)
    below = np.flatnonzero(((ratio[1:rmax] < ETA) | faded[1:rmax]) & (cum_flux[1:rmax] > 0))
    if below.size:
        k = int(below[0]) + 1  # first annulus under ETA; interpolate between k-1 and k
        r0, r1 = ratio[k - 1], ratio[k]
        t = (r0 - ETA) / (r0 - r1) if r0 != r1 else 0.0
        radius = (k - 1 + t) + 0.5
    else:
        # The galaxy fills the field (a zoomed-in cutout): its extent is at least the field's.
        radius = float(rmax)
    return float(radius * f)


def auto_crop_side(image: np.ndarray, radii: float, fallback: float) -> int:
    """Side (pixels) of the square frame ``2 * radii * R_petrosian`` around the centre,
    within [5%, 100%] of the shorter side; ``fallback`` (a fraction of the shorter side)
    when no central source is found."""
    short = min(image.shape[0], image.shape[1])
    radius = petrosian_radius(image)
    side = fallback * short if radius is None else 2.0 * radii * radius
    return int(np.clip(round(side), max(1, round(0.05 * short)), short))
