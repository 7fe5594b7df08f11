"""Synthetic galaxy images with known classes, for tests, demos and the real-vs-synthetic detector.

Real data is 2.7 GB and not always at hand; these renders are cheap (about a millisecond at
64 px), deterministic from a seed, and different enough between classes that a small network
must learn something to separate them, so a test can check that training actually works.

Each image is built like a survey cutout: light profiles (Sérsic bulges and ellipticals,
exponential discs, logarithmic spiral arms with star-forming knots, thin edge-on discs with a
dust lane, interacting pairs with tidal tails) in three bands with plausible colours, a few
foreground stars now and then, a Gaussian PSF, photon and sky noise, and an asinh stretch.
"""

from __future__ import annotations

import csv
import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from galaxymorph.io_utils import atomic_path, write_text

__all__ = [
    "GALAXY10_DECALS_LABEL",
    "SYNTHETIC_CLASSES",
    "make_synthetic_arrays",
    "preview_grid",
    "render_galaxy",
    "write_synthetic_catalog",
    "write_synthetic_h5",
]

SYNTHETIC_CLASSES = ["Elliptical", "Spiral", "Edge-on", "Merger"]

#: Where each synthetic class falls in the Galaxy10 DECaLS classes (for Galaxy10-layout files).
GALAXY10_DECALS_LABEL = {"Elliptical": 2, "Spiral": 7, "Edge-on": 9, "Merger": 1}

# Relative flux in (R, G, B) = (z, r, g)-like bands: old stars red, young stars blue.
_OLD = np.array([1.0, 0.72, 0.45])
_BULGE = np.array([1.0, 0.80, 0.58])
_DISC = np.array([0.85, 0.82, 0.80])
_YOUNG = np.array([0.55, 0.75, 1.15])
_DUST = np.array([0.55, 0.75, 1.0])  # extinction is strongest in the blue

# Display: asinh stretch, soft at ``_SOFT``, full white at ``_WHITE`` (flux units per pixel).
_SOFT = 0.02
_WHITE = 2.0


def _kind_index(kind: str) -> int:
    key = kind.lower().replace("_", "").replace("-", "").replace(" ", "")
    for i, name in enumerate(SYNTHETIC_CLASSES):
        if name.lower().replace("-", "") == key:
            return i
    raise ValueError(f"unknown synthetic galaxy kind {kind!r}; expected one of {SYNTHETIC_CLASSES}")


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _frame(size: int, cx: float, cy: float, pa: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated so that ``u`` runs along the major axis at angle ``pa``."""
    x, y = _grid(size)
    dx, dy = x - cx, y - cy
    c, s = np.cos(pa), np.sin(pa)
    return c * dx + s * dy, -s * dx + c * dy


def _to_image(u: float | np.ndarray, v: float | np.ndarray, cx: float, cy: float,
              pa: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(pa), np.sin(pa)
    return cx + c * np.asarray(u) - s * np.asarray(v), cy + s * np.asarray(u) + c * np.asarray(v)


def _sersic(u: np.ndarray, v: np.ndarray, re: float, n: float, q: float) -> np.ndarray:
    """Sérsic profile normalised to unit total flux (n=4 de Vaucouleurs, n=1 exponential)."""
    b = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)
    r = np.sqrt(u * u + (v / q) ** 2 + 0.05)
    img = np.exp(-b * ((r / re) ** (1.0 / n) - 1.0))
    return img / img.sum()


def _deposit(layer: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    """Add point sources (flux (n, 3)) with bilinear sub-pixel weights into (H, W, 3) ``layer``.

    Sub-pixel placement keeps a knot or star where it belongs once the PSF spreads it.
    """
    size = layer.shape[0]
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for ox, oy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + ox, y0 + oy
        ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
        np.add.at(layer, (yi[ok], xi[ok]), flux[ok] * w[ok, None])


def _colour(base: np.ndarray, rng: np.random.Generator, spread: float = 0.06) -> np.ndarray:
    return base * np.exp(rng.normal(0.0, spread, 3))


# -- the four kinds -----------------------------------------------------------------------------


def _elliptical(size: int, cx: float, cy: float, flux: float, rng: np.random.Generator,
                scale: float = 1.0) -> np.ndarray:
    re = size * rng.uniform(0.06, 0.12) * scale
    u, v = _frame(size, cx, cy, rng.uniform(0, np.pi))
    img = _sersic(u, v, re, rng.uniform(3.0, 5.0), rng.uniform(0.6, 1.0))
    return img[..., None] * (flux * _colour(_OLD, rng))


def _disc_galaxy(size: int, cx: float, cy: float, flux: float, rng: np.random.Generator,
                 scale: float = 1.0, arms: bool = True) -> np.ndarray:
    """Exponential disc + bulge + logarithmic spiral arms and knots, moderately inclined."""
    h = size * rng.uniform(0.07, 0.11) * scale
    pa = rng.uniform(0, np.pi)
    q = rng.uniform(0.45, 1.0)  # cos(inclination)
    u, v = _frame(size, cx, cy, pa)
    yd = v / q
    r = np.sqrt(u * u + yd * yd) + 1e-3
    theta = np.arctan2(yd, u)
    disc = np.exp(-r / h)
    out = np.zeros((size, size, 3))

    bulge_frac = rng.uniform(0.15, 0.4)
    bulge = _sersic(u, v, h * rng.uniform(0.25, 0.45), rng.uniform(1.5, 3.0), min(1.0, q + 0.3))
    out += bulge[..., None] * (flux * bulge_frac * _colour(_BULGE, rng))
    if not arms:
        out += (disc / disc.sum())[..., None] * (flux * (1 - bulge_frac) * _colour(_DISC, rng))
        return out

    m = int(rng.choice([2, 2, 2, 3, 4]))
    pitch = np.radians(rng.uniform(12.0, 35.0))
    wind = rng.choice([-1.0, 1.0])
    phase = rng.uniform(0, 2 * np.pi)
    log_r = np.log(r / h) / np.tan(pitch)
    psi = m * (wind * theta - log_r - phase)
    sharp = rng.uniform(2.0, 5.0)
    arm = ((1.0 + np.cos(psi)) * 0.5) ** sharp
    arm *= (1.0 - np.exp(-((r / (0.9 * h)) ** 2))) * np.exp(-r / (1.3 * h))
    arm_frac = rng.uniform(0.35, 0.6)
    smooth = disc / disc.sum()
    out += smooth[..., None] * (flux * (1 - bulge_frac) * (1 - arm_frac) * _colour(_DISC, rng))
    arm_flux = flux * (1 - bulge_frac) * arm_frac
    out += (arm / arm.sum())[..., None] * (0.75 * arm_flux * _colour(_YOUNG, rng))

    # Star-forming knots strung along the arms: what makes a spiral clumpy, not just striped.
    k = int(rng.integers(6, 18))
    rk = h * rng.uniform(0.9, 3.0, k)
    th = wind * (np.log(rk / h) / np.tan(pitch) + phase + 2 * np.pi * rng.integers(0, m, k) / m)
    th += rng.normal(0, 0.12, k)
    kx, ky = _to_image(rk * np.cos(th), rk * np.sin(th) * q, cx, cy, pa)
    weights = rng.exponential(1.0, k)
    _deposit(out, kx, ky, (0.25 * arm_flux * weights / weights.sum())[:, None] * _colour(_YOUNG, rng))
    return out


def _edge_on(size: int, cx: float, cy: float, flux: float, rng: np.random.Generator) -> np.ndarray:
    """A thin disc seen edge-on (sech² vertical profile), a bulge and often a dust lane."""
    dusty = rng.random() < 0.5
    # A lane the PSF does not fill in needs a bigger, thicker (less perfectly edge-on) disc.
    h = size * (rng.uniform(0.12, 0.16) if dusty else rng.uniform(0.07, 0.11))
    z0 = h * (rng.uniform(0.2, 0.3) if dusty else rng.uniform(0.10, 0.22))
    pa = rng.uniform(0, np.pi)
    u, v = _frame(size, cx, cy, pa)
    disc = np.exp(-np.sqrt(u * u + 0.25) / h) / np.cosh(v / z0) ** 2
    bulge_frac = rng.uniform(0.2, 0.5)
    bulge = _sersic(u, v, h * rng.uniform(0.3, 0.6), rng.uniform(1.0, 2.5), rng.uniform(0.6, 0.9))
    out = (disc / disc.sum())[..., None] * (flux * (1 - bulge_frac) * _colour(_DISC * 1.05, rng))
    out += bulge[..., None] * (flux * bulge_frac * _colour(_BULGE, rng))
    if dusty:
        tau = rng.uniform(3.0, 6.0)  # optical depth through the mid-plane, in the blue
        width = z0 * rng.uniform(0.5, 0.7)
        offset = rng.uniform(-0.3, 0.3) * z0  # slightly off edge-on: the lane sits off-centre
        lane = np.exp(-(((v - offset) / width) ** 2)) * np.exp(-np.abs(u) / (3 * h))
        out *= np.exp(-tau * lane[..., None] * _DUST)
    return out


def _merger(size: int, cx: float, cy: float, flux: float, rng: np.random.Generator) -> np.ndarray:
    """Two overlapping galaxies with tidal tails curving away from the pair."""
    sep = size * rng.uniform(0.12, 0.26)
    angle = rng.uniform(0, 2 * np.pi)
    ratio = rng.uniform(0.35, 1.0)
    out = np.zeros((size, size, 3))
    tails = np.zeros((size, size, 3))
    spin = rng.choice([-1.0, 1.0])
    for i, (sign, f) in enumerate(((1.0, 1.0), (-1.0, ratio))):
        gx = cx + sign * 0.5 * sep * np.cos(angle)
        gy = cy + sign * 0.5 * sep * np.sin(angle)
        part_flux = flux * f / (1 + ratio) * 0.8
        if rng.random() < 0.5:
            out += _elliptical(size, gx, gy, part_flux, rng, scale=0.8)
        else:
            out += _disc_galaxy(size, gx, gy, part_flux, rng, scale=0.75, arms=False)
        if i == 0 or rng.random() < 0.7:
            # A tail leaves each galaxy on its far side and bends in the sense of the orbit.
            t = np.linspace(0.0, 1.0, 80)
            start = angle + (0 if sign > 0 else np.pi) + rng.normal(0, 0.4)
            bend = spin * rng.uniform(1.2, 2.6)
            length = size * rng.uniform(0.2, 0.38)
            rad = size * 0.03 + length * t
            px = gx + rad * np.cos(start + bend * t)
            py = gy + rad * np.sin(start + bend * t)
            w = np.exp(-2.0 * t) * rng.uniform(0.6, 1.4, t.size)
            tail_flux = flux * f / (1 + ratio) * rng.uniform(0.15, 0.3)
            _deposit(tails, px, py, (tail_flux * w / w.sum())[:, None] * _colour(_DISC, rng))
    sigma = size * rng.uniform(0.02, 0.035)
    out += gaussian_filter(tails, sigma=(sigma, sigma, 0), mode="constant")
    return out


# -- the common pipeline ------------------------------------------------------------------------


def render_galaxy(kind: str, size: int = 64, rng: np.random.Generator | int | None = None
                  ) -> np.ndarray:
    """One synthetic ``kind`` galaxy (a name in :data:`SYNTHETIC_CLASSES`) as (size, size, 3) uint8.

    ``rng`` makes it reproducible (a Generator or an int seed); None draws fresh randomness.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    index = _kind_index(kind)
    cx, cy = (size - 1) / 2 + rng.normal(0.0, 0.04 * size, 2)
    # Total flux scales with area so a galaxy looks alike at every image size.
    flux = rng.lognormal(np.log(40.0), 0.35) * (size / 64.0) ** 2
    if index == 0:
        img = _elliptical(size, cx, cy, flux, rng)
    elif index == 1:
        img = _disc_galaxy(size, cx, cy, flux, rng)
    elif index == 2:
        img = _edge_on(size, cx, cy, flux, rng)
    else:
        img = _merger(size, cx, cy, flux * 1.2, rng)

    if rng.random() < 0.4:  # foreground stars: point sources, so just the PSF
        n = int(rng.integers(1, 4))
        sx, sy = rng.uniform(0, size - 1, (2, n))
        sflux = rng.lognormal(np.log(1.5), 0.8, n) * (size / 64.0) ** 2
        colours = np.exp(rng.normal(0, 0.15, (n, 3)))
        _deposit(img, sx, sy, sflux[:, None] * colours)

    psf = rng.uniform(0.7, 1.4) * size / 64.0
    img = gaussian_filter(img, sigma=(psf, psf, 0), mode="constant")
    sky = rng.uniform(0.004, 0.012)
    gain = rng.uniform(150.0, 400.0)  # counts per flux unit: sets the photon noise
    img += rng.standard_normal(img.shape) * np.sqrt(sky * sky + np.maximum(img, 0) / gain)
    img += 0.5 * sky  # survey cutouts leave a little sky, so the noise is visible, not clipped
    scaled = np.arcsinh(np.maximum(img, 0.0) / _SOFT) * (255.0 / np.arcsinh(_WHITE / _SOFT))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _plan(n_per_class: int | dict[str, int], seed: int) -> np.ndarray:
    if isinstance(n_per_class, dict):
        counts = [0] * len(SYNTHETIC_CLASSES)
        for name, n in n_per_class.items():
            counts[_kind_index(name)] = int(n)
    else:
        counts = [int(n_per_class)] * len(SYNTHETIC_CLASSES)
    if any(c < 0 for c in counts):
        raise ValueError(f"negative image count in {n_per_class!r}")
    labels = np.repeat(np.arange(len(SYNTHETIC_CLASSES), dtype=np.int64), counts)
    return np.random.default_rng([seed, 1]).permutation(labels)


def _render_all(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    # One child seed per image: image i is the same whatever else is rendered with it.
    seeds = np.random.SeedSequence(seed).spawn(len(labels))
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, (lab, ss) in enumerate(zip(labels, seeds, strict=True)):
        images[i] = render_galaxy(SYNTHETIC_CLASSES[lab], size, np.random.default_rng(ss))
    return images


def make_synthetic_arrays(n_per_class: int | dict[str, int], size: int = 64, seed: int = 0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of each class (or ``{name: n}``), shuffled, as arrays.

    Returns ``images`` (N, size, size, 3) uint8 and ``labels`` (N,) int64 indexing
    :data:`SYNTHETIC_CLASSES`.
    """
    labels = _plan(n_per_class, seed)
    return _render_all(labels, size, seed), labels


def write_synthetic_catalog(out_dir: str | Path, n_per_class: int | dict[str, int], size: int = 64,
                            seed: int = 0, fmt: str = "png") -> Path:
    """Write ``out_dir/images/syn_NNNNNN.<fmt>`` and ``out_dir/labels.csv``; return the CSV path.

    The CSV (``filename,label,label_name``) is written last and atomically, so a catalog that
    exists is complete: ``open_dataset(f"catalog:{path}")`` loads it.
    """
    from PIL import Image

    fmt = fmt.lower().lstrip(".")
    pil_format = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}.get(fmt)
    if pil_format is None:
        raise ValueError(f"fmt must be 'png' or 'jpg', got {fmt!r}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, labels = make_synthetic_arrays(n_per_class, size, seed)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["filename", "label", "label_name"])
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        name = f"syn_{i:06d}.{fmt}"
        path = image_dir / name
        tmp = image_dir / f".{name}.tmp"
        Image.fromarray(img).save(tmp, format=pil_format, **({"quality": 95} if fmt != "png" else {}))
        os.replace(tmp, path)
        writer.writerow([name, int(lab), SYNTHETIC_CLASSES[lab]])
    return write_text(out_dir / "labels.csv", rows.getvalue())


def write_synthetic_h5(path: str | Path, n_per_class: int | dict[str, int], size: int = 64,
                       seed: int = 0) -> Path:
    """Write a Galaxy10-layout HDF5 (``images`` uint8, ``ans`` uint8 Galaxy10 DECaLS labels).

    Labels follow :data:`GALAXY10_DECALS_LABEL`, so ``open_dataset(f"galaxy10-decals:{path}")``
    reads it like the real file; ``ra``/``dec``/``redshift``/``pxscale`` columns are filled too.
    """
    import h5py

    images, labels = make_synthetic_arrays(n_per_class, size, seed)
    ans = np.array([GALAXY10_DECALS_LABEL[SYNTHETIC_CLASSES[i]] for i in labels], dtype=np.uint8)
    rng = np.random.default_rng([seed, 2])
    n = len(labels)
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, size, size, 3) if n else None)
        f.create_dataset("ans", data=ans)
        f.create_dataset("ra", data=rng.uniform(0, 360, n))
        f.create_dataset("dec", data=np.degrees(np.arcsin(rng.uniform(-0.3, 1.0, n))))
        f.create_dataset("redshift", data=rng.uniform(0.01, 0.15, n))
        f.create_dataset("pxscale", data=np.full(n, 0.262))
    return path


def preview_grid(images: np.ndarray, ncols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) images into one RGB array, for eyeballing a batch of renders."""
    n, h, w, _ = images.shape
    nrows = max(1, -(-n // ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 40, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    return grid
