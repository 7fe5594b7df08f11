"""Bulge + disc galaxies rendered with GalSim (an established simulation code the project does
not use anywhere else): a generator family for ``bench_detector.py --unseen``, made
independently of galaxymorph's own renderer, eigengalaxy sampler and GAN.

    pip install 'galaxymorph[bench]'   # or pip install galsim; benchmark-only
    .venv/bin/python benchmarks/galsim_galaxies.py --n 300 --out /tmp/galsim_fakes

Each galaxy is a de Vaucouleurs bulge plus an exponential disc (random bulge fraction, sizes,
inclination and position angle), in three bands (g, r, i) whose colours differ between bulge
and disc, convolved with a Kolmogorov PSF, drawn on a sky-subtracted image with Poisson noise
from the sky and the galaxy in each band independently (GalSim's ``CCDNoise``, as separate
exposures are), then combined into RGB (i, r, g) with Lupton et al.'s asinh stretch (astropy's
``make_lupton_rgb``, as SDSS colour images are) and written as PNG. Deterministic in ``--seed``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BANDS = ("g", "r", "i")
#: Flux per band relative to r: a bulge is redder than a disc.
BULGE_COLOUR = (0.45, 1.0, 1.35)
DISC_COLOUR = (0.75, 1.0, 1.15)
#: Lupton stretch in counts per pixel (fixed, so faint galaxies look faint).
STRETCH = 150.0


def render(rng: np.random.Generator, size: int = 192) -> np.ndarray:
    """One (size, size, 3) uint8 RGB galaxy."""
    import galsim
    from astropy.visualization import make_lupton_rgb

    bt = rng.uniform(0.0, 1.0)
    r_disc = rng.uniform(0.07, 0.18) * size  # half-light radii in pixels
    r_bulge = r_disc * rng.uniform(0.2, 0.6)
    q = rng.uniform(0.15, 1.0)  # disc axis ratio: face-on to edge-on
    angle = rng.uniform(0, 180) * galsim.degrees
    psf = galsim.Kolmogorov(fwhm=rng.uniform(0.015, 0.03) * size)
    flux = 10 ** rng.uniform(5.0, 6.0)  # r-band counts: faint to bright
    sky = rng.uniform(40.0, 120.0)  # counts per pixel
    shift = rng.normal(0, 0.5, 2)
    gs_rng = galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))
    planes = []
    for b in range(3):
        disc = galsim.Exponential(half_light_radius=r_disc, flux=(1 - bt) * flux * DISC_COLOUR[b])
        disc = disc.shear(q=q, beta=angle)
        bulge = galsim.DeVaucouleurs(half_light_radius=r_bulge, flux=bt * flux * BULGE_COLOUR[b])
        bulge = bulge.shear(q=min(1.0, q + 0.4), beta=angle)
        gal = galsim.Convolve(disc + bulge, psf).shift(*shift)
        img = gal.drawImage(nx=size, ny=size, scale=1.0)
        img.addNoise(galsim.CCDNoise(gs_rng, sky_level=sky, gain=1.0, read_noise=5.0))
        planes.append(img.array.astype(np.float64))  # sky-subtracted: noise around 0
    g, r, i = planes
    # One calibration for every galaxy, as a survey's colour images have.
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides 0 by 0 on the sky
        return make_lupton_rgb(i, r, g, minimum=0.0, stretch=STRETCH, Q=8)


def write_folder(out: Path, n: int, size: int = 192, seed: int = 0) -> Path:
    """``n`` PNGs in ``out`` (a plain folder: ``--fake`` / ``--unseen`` take it as one family)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        Image.fromarray(render(rng, size)).save(out / f"galsim_{k:05d}.png")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=192, help="side in pixels (the detector's chain "
                    "resamples it; GZ1's frames are about 210 px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        import galsim  # noqa: F401
    except ImportError:
        raise SystemExit("galsim_galaxies.py needs GalSim: pip install 'galaxymorph[bench]' "
                         "(or pip install galsim)") from None
    print(f"wrote {args.n} images to {write_folder(args.out, args.n, args.size, args.seed)}")


if __name__ == "__main__":
    main()
