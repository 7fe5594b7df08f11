"""Bulge + disc galaxies rendered with GalSim (an established simulation code the project does
not use anywhere else), in several *settings*: generator families for ``bench_detector.py``
that no detector trains on, made independently of galaxymorph's own renderer, eigengalaxy
sampler and GAN.

    pip install 'galaxymorph[bench]'   # or pip install galsim; benchmark-only
    .venv/bin/python benchmarks/galsim_galaxies.py --n 300 --setting survey --out /tmp/galsim_survey

Each galaxy is a de Vaucouleurs bulge plus an exponential disc (random bulge fraction, sizes,
inclination and position angle), in three bands (g, r, i) whose colours differ between bulge
and disc, convolved with a PSF, drawn on a sky-subtracted image with noise from the sky and the
galaxy in each band independently (as separate exposures are), then combined into RGB (i, r, g)
with a stretch and written as PNG or JPEG. Deterministic in ``--seed``.

What makes a fake easy to spot is mostly *how* it was rendered, not the galaxy, so the
settings (:data:`SETTINGS`) vary exactly that: field stars and neighbouring galaxies, the noise
level and whether it is correlated between pixels (resampled or co-added images), the PSF
(Kolmogorov or Moffat, one per band or shared), the stretch (Lupton asinh, per-band asinh,
square root), the file format and JPEG quality, and the size of the cutout (GZ1 is 423 px, GZ2
424, DECaLS 256, the GZ2 central crops 212). ``plain`` is the setting of the first version
(192 px PNG, no stars, white noise, one Kolmogorov PSF): the same images for the same seed.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BANDS = ("g", "r", "i")
#: Flux per band relative to r: a bulge is redder than a disc.
BULGE_COLOUR = (0.45, 1.0, 1.35)
DISC_COLOUR = (0.75, 1.0, 1.15)
#: Lupton stretch in counts per pixel (fixed, so faint galaxies look faint).
STRETCH = 150.0


@dataclass(frozen=True)
class Setting:
    """How one family is rendered. Ranges are drawn uniformly per image."""

    sizes: tuple[int, ...] = (192,)  # output side in pixels, one drawn per image
    radius: tuple[float, float] = (0.07, 0.18)  # disc half-light radius, share of the side
    psf: str = "kolmogorov"  # or "moffat" (beta 2.5-4.5: broader wings)
    psf_per_band: bool = False  # seeing differs per band (g broadest), as separate exposures
    sky: tuple[float, float] = (40.0, 120.0)  # counts per pixel
    log_flux: tuple[float, float] = (5.0, 6.0)  # r-band galaxy counts
    noise_corr: tuple[float, float] = (0.0, 0.0)  # Gaussian kernel sigma (px) of the noise
    stars: float = 0.0  # mean number of field stars
    neighbours: float = 0.0  # mean number of other galaxies in the frame
    stretch: str = "lupton"  # "lupton" (one asinh for all bands), "asinh" (per band), "sqrt"
    lupton_q: tuple[float, float] = (8.0, 8.0)
    lupton_stretch: tuple[float, float] = (STRETCH, STRETCH)
    sky_floor: tuple[float, float] = (0.0, 0.0)  # stretch minimum, counts (negative: sky shows)
    jpeg: tuple[int, int] | None = None  # JPEG quality range; None: PNG


#: The families of the benchmark. Each changes several of the things that make a fake easy.
SETTINGS: dict[str, Setting] = {
    "plain": Setting(),
    # What issue 33's new user tried: GZ2-sized JPEGs, per-band seeing, field stars and
    # neighbours, an asinh gri stretch.
    "survey": Setting(sizes=(424,), radius=(0.03, 0.08), psf_per_band=True, sky=(30.0, 150.0), stars=2.0, neighbours=1.5,
                      lupton_q=(6.0, 10.0), lupton_stretch=(100.0, 250.0), sky_floor=(-15.0, 0.0),
                      jpeg=(80, 95)),
    # Resampled / co-added images: noise correlated between pixels, a Moffat PSF with wings,
    # GZ1-sized JPEGs at the survey's own quality (75).
    "correlated": Setting(sizes=(423,), radius=(0.03, 0.1), psf="moffat", sky=(40.0, 160.0), noise_corr=(0.6, 1.2),
                          stars=1.0, neighbours=1.0, lupton_q=(6.0, 12.0),
                          lupton_stretch=(80.0, 200.0), sky_floor=(-10.0, 0.0), jpeg=(75, 75)),
    # Deep imaging: bright galaxies on little noise, a per-band asinh stretch, DECaLS-sized.
    "deep": Setting(sizes=(256,), psf="moffat", psf_per_band=True, sky=(5.0, 20.0),
                    log_flux=(5.3, 6.3), stars=1.5, neighbours=2.0, stretch="asinh",
                    jpeg=(90, 95)),
    # Faint galaxies in heavy noise, a square-root stretch, small heavily compressed cutouts.
    "noisy": Setting(sizes=(212, 128), sky=(150.0, 400.0), log_flux=(4.6, 5.4),
                     noise_corr=(0.0, 0.7), stars=0.5, stretch="sqrt", jpeg=(55, 80)),
}


def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(bounds[0]) if bounds[0] == bounds[1] else float(rng.uniform(*bounds))


def _sources(rng: np.random.Generator, size: int, s: Setting, psf_fwhm: float, galsim):
    """Field stars and neighbouring galaxies: (profile per band, offset) pairs."""
    out = []
    for _ in range(int(rng.poisson(s.stars))):
        flux = 10 ** rng.uniform(3.5, 5.5)
        colour = (rng.uniform(0.3, 1.2), 1.0, rng.uniform(0.9, 1.6))
        where = rng.uniform(-0.45, 0.45, 2) * size
        out.append(([galsim.DeltaFunction(flux=flux * c) for c in colour], where))
    for _ in range(int(rng.poisson(s.neighbours))):
        flux = 10 ** rng.uniform(3.5, 5.0)
        radius = rng.uniform(0.01, 0.05) * size + psf_fwhm
        shape = dict(q=rng.uniform(0.3, 1.0), beta=rng.uniform(0, 180) * galsim.degrees)
        colour = (rng.uniform(0.3, 0.8), 1.0, rng.uniform(1.0, 1.5))
        where = rng.uniform(-0.45, 0.45, 2) * size
        out.append(([galsim.Exponential(half_light_radius=radius, flux=flux * c).shear(**shape)
                     for c in colour], where))
    return out


def _noise(rng: np.random.Generator, model: np.ndarray, sky: float, corr: float) -> np.ndarray:
    """Sky + shot noise of one band (gain 1, read noise 5), white or smoothed by a Gaussian
    kernel of ``corr`` px at the same variance."""
    from scipy import ndimage

    white = rng.standard_normal(model.shape)
    if corr > 0:
        kernel = np.zeros((31, 31))
        kernel[15, 15] = 1.0
        norm = np.sqrt((ndimage.gaussian_filter(kernel, corr) ** 2).sum())
        white = ndimage.gaussian_filter(white, corr) / norm
    return white * np.sqrt(sky + np.clip(model, 0, None) + 25.0)


def _stretch(rng: np.random.Generator, g: np.ndarray, r: np.ndarray, i: np.ndarray,
             s: Setting) -> np.ndarray:
    from astropy.visualization import make_lupton_rgb

    if s.stretch == "lupton":
        with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides 0 by 0 on the sky
            return make_lupton_rgb(i, r, g, minimum=_u(rng, s.sky_floor),
                                   stretch=_u(rng, s.lupton_stretch), Q=_u(rng, s.lupton_q))
    planes = []
    for band, scale in zip((i, r, g), (1.0, 1.1, 1.6), strict=True):
        if s.stretch == "asinh":  # per band, as survey viewers scale each band separately
            soft = rng.uniform(2.0, 6.0)
            v = np.arcsinh(band * scale / soft) / np.arcsinh(rng.uniform(400, 900) / soft)
        else:  # square root of the counts above the sky, clipped at a bright level
            v = np.sqrt(np.clip(band * scale, 0, None) / rng.uniform(800, 2000))
        planes.append(np.clip(v, 0, 1))
    return np.round(np.stack(planes, axis=-1) * 255).astype(np.uint8)


def render(rng: np.random.Generator, size: int = 192, setting: Setting | None = None) -> np.ndarray:
    """One (size, size, 3) uint8 RGB galaxy in ``setting`` (default: ``plain``)."""
    import galsim

    s = setting or SETTINGS["plain"]
    bt = rng.uniform(0.0, 1.0)
    r_disc = rng.uniform(*s.radius) * size  # half-light radii in pixels
    r_bulge = r_disc * rng.uniform(0.2, 0.6)
    q = rng.uniform(0.15, 1.0)  # disc axis ratio: face-on to edge-on
    angle = rng.uniform(0, 180) * galsim.degrees
    fwhm = rng.uniform(0.015, 0.03) * size
    flux = 10 ** rng.uniform(*s.log_flux)
    sky = rng.uniform(*s.sky)  # counts per pixel
    shift = rng.normal(0, 0.5, 2)
    gs_rng = galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))
    plain = s == SETTINGS["plain"]
    extra = [] if plain else _sources(rng, size, s, fwhm, galsim)
    beta = _u(rng, (2.5, 4.5)) if s.psf == "moffat" else None
    corr = _u(rng, s.noise_corr)
    planes = []
    for b in range(3):
        seeing = fwhm * ((1.25, 1.1, 1.0)[b] if s.psf_per_band else 1.0)
        psf = (galsim.Moffat(beta=beta, fwhm=seeing) if beta else galsim.Kolmogorov(fwhm=seeing))
        disc = galsim.Exponential(half_light_radius=r_disc, flux=(1 - bt) * flux * DISC_COLOUR[b])
        disc = disc.shear(q=q, beta=angle)
        bulge = galsim.DeVaucouleurs(half_light_radius=r_bulge, flux=bt * flux * BULGE_COLOUR[b])
        bulge = bulge.shear(q=min(1.0, q + 0.4), beta=angle)
        scene = disc + bulge
        for profiles, where in extra:
            scene = scene + profiles[b].shift(*where)
        gal = galsim.Convolve(scene, psf).shift(*shift)
        img = gal.drawImage(nx=size, ny=size, scale=1.0)
        if plain:
            img.addNoise(galsim.CCDNoise(gs_rng, sky_level=sky, gain=1.0, read_noise=5.0))
            planes.append(img.array.astype(np.float64))  # sky-subtracted: noise around 0
        else:
            model = img.array.astype(np.float64)
            planes.append(model + _noise(rng, model, sky, corr))
    g, r, i = planes
    return _stretch(rng, g, r, i, s)


def encode(image: np.ndarray, rng: np.random.Generator, setting: Setting) -> tuple[bytes, str]:
    """The file bytes and suffix of one image as the setting stores it."""
    from PIL import Image

    buf = io.BytesIO()
    if setting.jpeg is None:
        Image.fromarray(image).save(buf, format="PNG")
        return buf.getvalue(), ".png"
    quality = int(rng.integers(setting.jpeg[0], setting.jpeg[1] + 1))
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), ".jpg"


def write_folder(out: Path, n: int, size: int | None = None, seed: int = 0,
                 setting: str = "plain") -> Path:
    """``n`` images in ``out`` (a plain folder: ``--fake`` / ``--unseen`` take it as one family).
    ``size`` overrides the setting's sizes."""
    s = SETTINGS[setting]
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        side = size or (s.sizes[0] if len(s.sizes) == 1 else int(rng.choice(s.sizes)))
        data, suffix = encode(render(rng, side, s), rng, s)
        (out / f"galsim_{k:05d}{suffix}").write_bytes(data)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--setting", default="plain", choices=sorted(SETTINGS))
    ap.add_argument("--size", type=int, default=None, help="side in pixels (default: the "
                    "setting's; the detector's chain resamples it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        import galsim  # noqa: F401
    except ImportError:
        raise SystemExit("galsim_galaxies.py needs GalSim: pip install 'galaxymorph[bench]' "
                         "(or pip install galsim)") from None
    folder = write_folder(args.out, args.n, args.size, args.seed, args.setting)
    print(f"wrote {args.n} images ({args.setting}) to {folder}")


if __name__ == "__main__":
    main()
