"""Generator families the project can make by itself, so a detector never learns just one.

A user usually holds one generator's images. A detector trained on those alone learns that
generator's artefacts (docs/detector.md: accuracy 0.50 on unseen generators), so
``train_detector`` adds these families on the synthetic side when it is given only one:

* ``renderer``: the procedural bulge + disc + arms renderer (:mod:`galaxymorph.data.synthetic`);
* ``eigengalaxy``: a PCA ("eigengalaxy") sampler fitted to the real images: the mean galaxy
  plus Gaussian draws of the component coefficients, smooth and low-rank;
* ``gan:RUN``: our GAN (a ``galaxymorph gan train`` run folder, sampled at its weights);
  give one per training stage (e.g. copies of a run folder after 2 and after 10 epochs);
* ``resynth``: real images re-synthesised, not generated: each smoothed (a PSF-like blur, or
  resampled down and back up as a generator's upsampling does) and given fresh noise at its
  own measured level. Same galaxies as the real side, other pixel statistics: what is left
  to learn is how a made image's noise and fine detail differ from a camera's, the part of a
  generator's signature that no one family owns (the idea of self-blended images, Shiohara
  & Yamasaki 2022, for faces). A training family only: nobody meets it as "a generator".

Each writes a catalog folder and returns its spec for :func:`~galaxymorph.detection.assemble`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from galaxymorph.errors import ConfigError, ImageReadError
from galaxymorph.io_utils import atomic_path, write_text

log = logging.getLogger("galaxymorph")

#: What ``auto_fakes="auto"`` adds beside the user's one generator.
AUTO_FAMILIES = ("renderer", "eigengalaxy")


def renderer_catalog(out_dir: Path, n: int, size: int = 64, seed: int = 0) -> str:
    """``n`` procedural renders (all four classes alike) as a catalog spec."""
    from galaxymorph.data.synthetic import write_synthetic_catalog

    csv = out_dir / "labels.csv"
    if not csv.exists():
        write_synthetic_catalog(out_dir, max(1, -(-n // 4)), size=size, seed=seed)
    return f"catalog:{csv}"


def _real_images(real_spec: str, size: int, crop: float, rng: np.random.Generator,
                 limit: int) -> Iterator[np.ndarray]:
    """Up to ``limit`` readable real images of ``real_spec`` in a random order, through the
    detector's resampling chain, as ``(size, size, 3)`` uint8 arrays."""
    from galaxymorph.detection.assembly import Resampling, open_images

    ds = open_images(real_spec)
    res = Resampling(size, crop=crop)
    taken = 0
    for i in rng.permutation(len(ds)):
        if taken >= limit:
            return
        try:
            image = res(ds.read(int(i))).permute(1, 2, 0).numpy()
        except ImageReadError:
            continue
        taken += 1
        yield image


def _write_catalog(out_dir: Path, images: Iterable[np.ndarray], family: str) -> int:
    """``images`` as PNGs in ``out_dir/images`` and a ``labels.csv`` naming them (written last:
    its presence marks a finished family); returns how many."""
    from PIL import Image

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = ["filename,label,label_name"]
    for k, image in enumerate(images):
        name = f"images/{family}_{k:05d}.png"
        with atomic_path(out_dir / name) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        lines.append(f"{name},0,{family}")
    if len(lines) > 1:
        write_text(out_dir / "labels.csv", "\n".join(lines) + "\n")
    return len(lines) - 1


def eigengalaxy_catalog(real_spec: str, out_dir: Path, n: int, *, n_fit: int = 1000,
                        size: int = 64, crop: float = 1.0, components: int = 48,
                        seed: int = 0) -> str:
    """Fit a PCA to up to ``n_fit`` real images at ``size`` px; write ``n`` samples as a catalog."""
    from sklearn.decomposition import PCA

    csv = out_dir / "labels.csv"
    if csv.exists():
        return f"catalog:{csv}"
    rng = np.random.default_rng(seed)
    rows = [im.reshape(-1) for im in _real_images(real_spec, size, crop, rng, n_fit)]
    if len(rows) < 3:
        raise ConfigError(f"the eigengalaxy sampler needs at least 3 readable real images; "
                          f"{real_spec} gave {len(rows)}")
    x = np.asarray(rows, dtype=np.float64)
    pca = PCA(n_components=min(components, len(x) - 1), random_state=seed).fit(x)
    z = rng.standard_normal((n, pca.n_components_)) * np.sqrt(pca.explained_variance_)
    samples = np.clip(pca.inverse_transform(z), 0, 255).round().astype(np.uint8)
    _write_catalog(out_dir, (s.reshape(size, size, 3) for s in samples), "eigengalaxy")
    return f"catalog:{csv}"


def resynthesise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 image smoothed and re-noised (see ``resynth`` above)."""
    from scipy import ndimage

    x = image.astype(np.float32)
    # The image's own noise: robust spread of what a 1-px blur removes, per channel.
    resid = x - ndimage.gaussian_filter(x, (1.0, 1.0, 0))
    noise = 1.4826 * np.median(np.abs(resid - np.median(resid, axis=(0, 1))), axis=(0, 1))
    h, w = x.shape[:2]
    if rng.random() < 0.5:
        y = ndimage.gaussian_filter(x, (rng.uniform(0.6, 1.6),) * 2 + (0,))
    else:  # down and back up (bilinear), as a generator's upsampling layers see the image
        f = rng.uniform(1.5, 3.0)
        small = ndimage.zoom(x, (1 / f, 1 / f, 1), order=1, grid_mode=True, mode="nearest")
        y = ndimage.zoom(small, (h / small.shape[0], w / small.shape[1], 1), order=1,
                         grid_mode=True, mode="nearest")[:h, :w]
    if rng.random() < 0.8:  # fresh noise at the image's own level: white, per band or shared
        sigma = np.maximum(noise, 0.5) * rng.uniform(0.5, 1.5)
        shape = (h, w, 3) if rng.random() < 0.5 else (h, w, 1)
        y = y + rng.standard_normal(shape).astype(np.float32) * sigma
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def resynth_catalog(real_spec: str, out_dir: Path, n: int, *, size: int = 64, crop: float = 1.0,
                    seed: int = 0) -> str:
    """``n`` re-synthesised real images (:func:`resynthesise`) at ``size`` px as a catalog."""
    csv = out_dir / "labels.csv"
    if csv.exists():
        return f"catalog:{csv}"
    rng = np.random.default_rng(seed)
    made = (resynthesise(im, rng) for im in _real_images(real_spec, size, crop, rng, n))
    if _write_catalog(out_dir, made, "resynth") == 0:
        raise ConfigError(f"the resynth family needs readable real images; {real_spec} gave none")
    return f"catalog:{csv}"


def gan_catalog(run_dir: str | Path, out_dir: Path, n: int, seed: int = 0) -> str:
    """About ``n`` samples of a GAN run (``gan sample`` output, shared among its classes).

    Stages of one run drawn with one seed share latent vectors, so assembly groups them."""
    from galaxymorph.generative.sampling import load_generator, sample

    folder = out_dir / f"gan_{Path(run_dir).name}"
    if not (folder / "labels.csv").exists():
        per_class = max(1, -(-n // len(load_generator(run_dir).class_names)))
        sample(run_dir, folder, per_class, seed=seed)
    return str(folder)


def choose_families(fakes: list[str], auto_fakes: list[str] | str = "auto") -> list[str]:
    """``"auto"``: the project's own families when the user gave one generator, none when
    they gave several (they chose their mix); a list is taken as given."""
    if auto_fakes == "auto":
        return list(AUTO_FAMILIES) if len(fakes) == 1 else []
    return [auto_fakes] if isinstance(auto_fakes, str) else list(auto_fakes)


def family_specs(families: list[str], out_dir: Path, *, real_spec: str, n: int, size: int,
                 real_crop: float, seed: int) -> dict[str, str]:
    """Make each named family (``renderer``, ``eigengalaxy``, ``gan:RUN``); name -> spec."""
    specs: dict[str, str] = {}
    for fam in families:
        if fam == "renderer":
            specs[fam] = renderer_catalog(out_dir / "renderer", n, size=size, seed=seed + 101)
        elif fam == "eigengalaxy":
            specs[fam] = eigengalaxy_catalog(real_spec, out_dir / "eigengalaxy", n, size=size,
                                             crop=real_crop, seed=seed + 102)
        elif fam == "resynth":
            specs[fam] = resynth_catalog(real_spec, out_dir / "resynth", n, size=size,
                                         crop=real_crop, seed=seed + 103)
        elif fam.startswith("gan:"):
            specs[fam] = gan_catalog(fam.removeprefix("gan:"), out_dir, n, seed=seed)
        else:
            raise ConfigError(f"unknown generator family '{fam}'; use renderer, eigengalaxy, "
                              "resynth or gan:RUN_DIR")
    return specs
