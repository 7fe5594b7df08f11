"""Profile-fit renderings of real galaxies: a generator family for ``bench_detector.py`` that no
detector trains on and that starts from the real images themselves.

    .venv/bin/python benchmarks/profile_fit_galaxies.py --real ../shared/data/gz1 --n 300 \\
        --out /tmp/profile_fit

For each real image, a Sersic profile (amplitude, effective radius, index 0.5-6, centre,
ellipticity, angle) plus a flat sky is fitted to the grey image (scipy least squares, on the
image binned 4x4 for speed); each band then gets its own amplitude and sky for that shape (linear
least squares), and the fit is rendered at the image's full size with fresh noise at each band's
own measured level (independent per band, as separate exposures, and correlated between
neighbouring pixels as much as the image's own noise), and saved as JPEG at the survey's
quality (GZ1: 75). The result has the real galaxy's size, shape, orientation,
brightness and colour, the real noise level and the real file format; what it lacks is what no
smooth profile has: arms, knots, dust lanes, and the other sources in the field. Deterministic
in ``--seed``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

#: How much the image is binned for the fit (the rendering is at full size).
BIN = 4


def sersic(params: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A unit-amplitude-at-r_eff Sersic profile on the grid (yy, xx)."""
    from scipy.special import gammaincinv

    r_eff, n, x0, y0, ellip, theta = params
    b = gammaincinv(2 * n, 0.5)
    c, s = np.cos(theta), np.sin(theta)
    dx, dy = xx - x0, yy - y0
    major = dx * c + dy * s
    minor = -dx * s + dy * c
    r = np.hypot(major, minor / max(1 - ellip, 0.05))
    return np.exp(-b * ((r / r_eff) ** (1 / n) - 1))


def fit(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape parameters (``sersic``'s, at full resolution) and each band's amplitude and sky."""
    from scipy.optimize import least_squares

    h, w, _ = image.shape
    hb, wb = h // BIN, w // BIN
    small = image[:hb * BIN, :wb * BIN].reshape(hb, BIN, wb, BIN, 3).mean(axis=(1, 3))
    grey = small.mean(axis=2)
    yy, xx = np.mgrid[:hb, :wb].astype(np.float64)
    sky0 = float(np.median(np.r_[grey[:3].ravel(), grey[-3:].ravel()]))
    peak = float(grey[hb // 2 - 3:hb // 2 + 4, wb // 2 - 3:wb // 2 + 4].max()) - sky0
    start = np.array([max(peak, 1.0) / 3, hb / 12, 2.0, wb / 2, hb / 2, 0.2, 0.0, sky0])
    low = [0, 0.5, 0.5, wb * 0.35, hb * 0.35, 0.0, -np.pi, -50]
    high = [300, hb / 2, 6.0, wb * 0.65, hb * 0.65, 0.9, np.pi, 255]

    def resid(p: np.ndarray) -> np.ndarray:
        return (p[0] * sersic(p[1:7], yy, xx) + p[7] - grey).ravel()

    sol = least_squares(resid, np.clip(start, low, high), bounds=(low, high), max_nfev=300)
    shape = sol.x[1:7].copy()
    shape[0] *= BIN
    shape[2] = (shape[2] + 0.5) * BIN - 0.5
    shape[3] = (shape[3] + 0.5) * BIN - 0.5
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    model = sersic(shape, yy, xx)
    design = np.stack([model.ravel(), np.ones(h * w)], axis=1)
    coef = np.linalg.lstsq(design, image.reshape(-1, 3), rcond=None)[0]  # (2, 3)
    return shape, coef[0], coef[1]


def _border(shape: tuple[int, ...]) -> np.ndarray:
    """The frame of width 1/8 of the side (at least 4 px): sky, as far as a cutout has any."""
    b = _width(shape)
    border = np.zeros(shape[:2], dtype=bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    return border


def _width(shape: tuple[int, ...]) -> int:
    return max(4, shape[0] // 8)


def sky_spread(image: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Each band's spread in the border, stars left out (values past the 98th percentile).
    Measured after the survey's stretch clipped the sky at 0, so a rendering is matched to it
    as it looks, not to a noise level before the clip."""
    out = []
    for c in range(image.shape[2]):
        v = image[..., c][border]
        out.append(v[v <= np.percentile(v, 98)].std())
    return np.array(out)


def noise_correlation(image: np.ndarray) -> float:
    """The Gaussian kernel (sigma, px) that correlates neighbouring pixels' noise as much as the
    image's own (survey cutouts are resampled and compressed: their noise is not white)."""
    top = image.mean(axis=2)[:_width(image.shape)]
    top = top - np.median(top)
    rho = float((top[:, 1:] * top[:, :-1]).mean() / max((top ** 2).mean(), 1e-9))
    # Gaussian-smoothed white noise has lag-1 autocorrelation exp(-1 / (4 sigma^2)).
    return min(float(np.sqrt(-1 / (4 * np.log(rho)))), 3.0) if 0.05 < rho < 0.95 else 0.0


def render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The fitted profile of one (H, W, 3) uint8 real image, re-noised, as uint8."""
    from scipy import ndimage

    x = image.astype(np.float64)
    shape, amp, sky = fit(x)
    h, w, _ = x.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    model = sersic(shape, yy, xx)[..., None] * amp + sky
    border = _border(x.shape)
    target, corr = sky_spread(x, border), noise_correlation(x)
    noise = rng.standard_normal(x.shape)
    if corr > 0:
        noise = ndimage.gaussian_filter(noise, (corr, corr, 0))
    noise /= noise.std(axis=(0, 1))
    scale = target.copy()
    for _ in range(3):  # match the border's spread after the clip at 0, band by band
        out = np.clip(np.round(model + noise * scale), 0, 255)
        scale *= target / np.maximum(sky_spread(out, border), 1e-3)
    return np.clip(np.round(model + noise * scale), 0, 255).astype(np.uint8)


def write_folder(real: str, out: Path, n: int, seed: int = 0, quality: int = 75,
                 skip: int = 0) -> Path:
    """``n`` renderings of real images of ``real`` (a dataset spec), drawn at random after
    leaving out the first ``skip`` of the shuffled order, as JPEGs in ``out``."""
    from PIL import Image

    from galaxymorph.data import open_dataset
    from galaxymorph.errors import ImageReadError

    ds = open_dataset(real)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    k = 0
    for i in rng.permutation(len(ds))[skip:]:
        if k >= n:
            break
        try:
            image = ds.read(int(i))
        except ImageReadError:
            continue
        buf = io.BytesIO()
        Image.fromarray(render(image, rng)).save(buf, format="JPEG", quality=quality)
        (out / f"profile_{k:05d}.jpg").write_bytes(buf.getvalue())
        k += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default="../shared/data/gz1")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--quality", type=int, default=75, help="JPEG quality (GZ1's is 75)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    folder = write_folder(args.real, args.out, args.n, args.seed, args.quality)
    print(f"wrote {args.n} profile-fit renderings to {folder}")


if __name__ == "__main__":
    main()
