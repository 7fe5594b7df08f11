"""The generator families of ``bench_detector.py``: the ones a detector may train on, and the
ones no detector ever trains on.

Trainable (each held out of one detector in turn): ``renderer``, ``eigengalaxy``, and our GAN
in two versions, ``gan`` (an older one: 32 px, 16 channels, sampled after 50 and 200 steps) and
``gan_new`` (a newer one: 64 px, 32 channels, sampled after 750 and 1,500 steps), plus any
``--fake`` folder.

Never trained on (scored by every detector): GalSim renderings in each setting of
``galsim_galaxies.SETTINGS`` (``galsim_<setting>``), profile-fit renderings of real galaxies
(``profile_fit``, ``profile_fit_galaxies.py``) and any ``--unseen`` folder. Each is written once
into the work folder (a ``done`` file marks it finished) and reused by later invocations.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

#: The GANs the benchmark trains itself: image size, channels, steps per epoch, the two stages'
#: epochs, and the seed (so the two versions differ in more than their length).
GANS = {"gan": dict(size=32, channels=16, steps=25, early=2, late=8, max_images=800, seed=0),
        "gan_new": dict(size=64, channels=32, steps=75, early=10, late=20, max_images=None,
                        seed=11)}


def _epochs(run: Path) -> int:
    """Epochs a GAN run folder has finished (0: none)."""
    card = run / "gan_card.json"
    return int(json.loads(card.read_text()).get("epochs", 0)) if card.exists() else 0


def train_gan_stages(real: str, crop: float, work: Path, version: str) -> list[str]:
    """One of :data:`GANS` trained on the real images; run folders at its two stages. An
    interrupted run is resumed from its last checkpoint."""
    from galaxymorph.generative.trainer import GanConfig, train_gan

    g = GANS[version]
    run, stage = work / f"{version}_late", work / f"{version}_early"
    legacy = work / "gan_late" if version == "gan" else None  # work folders of earlier versions
    if legacy is not None and (legacy / "generator.safetensors").exists():
        return [str(work / "gan_early"), str(legacy)]
    if _epochs(run) == 0:
        shutil.rmtree(run, ignore_errors=True)
        cfg = GanConfig(data=real, label_map="gz1-4", image_size=g["size"], crop=crop,
                        epochs=g["early"], batch_size=32, steps_per_epoch=g["steps"],
                        g_channels=g["channels"], d_channels=g["channels"],
                        max_images=g["max_images"], threads=2, cache=False, device="cpu",
                        seed=g["seed"])
        train_gan(run, cfg, progress=False, echo=None)
    elif _epochs(run) < g["early"]:
        train_gan(run, resume=True, epochs=g["early"], progress=False, echo=None)
    if _epochs(stage) != g["early"]:
        if _epochs(run) != g["early"]:
            raise SystemExit(f"{stage}: the early stage is lost; delete {run} to train again")
        shutil.rmtree(stage, ignore_errors=True)
        shutil.copytree(run, stage)
    if _epochs(run) < g["late"]:
        train_gan(run, resume=True, epochs=g["late"], progress=False, echo=None)
    return [str(stage), str(run)]


def trainable(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    """family -> catalog specs, each pool large enough for training and fresh test images."""
    from galaxymorph.detection.generators import eigengalaxy_catalog, gan_catalog, renderer_catalog

    pool = args.n + args.n_eval
    fams = {"renderer": [renderer_catalog(work / "renderer", pool, size=64, seed=args.seed + 1)],
            "eigengalaxy": [eigengalaxy_catalog(args.real, work / "eigengalaxy", pool, n_fit=600,
                                                size=64, crop=args.real_crop, seed=args.seed + 2)]}
    runs: dict[str, list[str]] = {"gan": list(args.gan_run), "gan_new": list(args.gan_new_run)}
    for version in args.train_gans:
        runs[version] += train_gan_stages(args.real, args.real_crop, work / "gan_runs", version)
    for version, stages in runs.items():
        if stages:
            out = work / ("gan_samples" if version == "gan" else f"{version}_samples")
            fams[version] = [gan_catalog(r, out, pool // len(stages), seed=args.seed) for r in stages]
    for folder in args.fake:
        fams[f"folder {Path(folder).name}"] = [folder]
    return fams


def _done(folder: Path) -> bool:
    return (folder / "done").exists()


def never_trained_on(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    """Families no detector trains on: GalSim settings, profile fits, ``--unseen`` folders."""
    unseen = {f"unseen {Path(f).name}": [str(f)] for f in args.unseen}
    settings = [s for s in args.galsim_settings.split(",") if s] if args.galsim else []
    if settings:
        try:
            import galsim  # noqa: F401
        except ImportError:
            raise SystemExit("--galsim needs GalSim: pip install 'galaxymorph[bench]' "
                             "(or pip install galsim)") from None
        from galsim_galaxies import SETTINGS, write_folder

        for k, name in enumerate(SETTINGS):
            if name not in settings:
                continue
            # "plain" keeps the folder and seed of the first version of the benchmark.
            folder = work / ("galsim" if name == "plain" else f"galsim_{name}")
            if not _done(folder):
                shutil.rmtree(folder, ignore_errors=True)
                write_folder(folder, args.galsim, seed=args.seed + 3 + 1000 * k, setting=name)
                (folder / "done").write_text(f"{args.galsim}\n")
            unseen[f"unseen galsim_{name}"] = [str(folder)]
    if args.profile_fit:
        from profile_fit_galaxies import write_folder as write_profiles

        folder = work / "profile_fit"
        if not _done(folder):
            shutil.rmtree(folder, ignore_errors=True)
            write_profiles(args.real, folder, args.profile_fit, seed=args.seed + 4)
            (folder / "done").write_text(f"{args.profile_fit}\n")
        unseen["unseen profile_fit"] = [str(folder)]
    return unseen


def degraded_copy(specs: list[str], kind: str, out: Path) -> str:
    """A folder of a family's images JPEG-compressed (``jpegQ``: quality Q) or blurred
    (``blurS``: a Gaussian of S px), as a user's copies of a generator's output may be."""
    from PIL import Image, ImageFilter

    from galaxymorph.detection.assembly import open_images

    if _done(out):
        return str(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    k = 0
    for spec in specs:
        ds = open_images(spec)
        for i in range(len(ds)):
            img = Image.fromarray(ds.read(i))
            if kind.startswith("jpeg"):
                img.save(out / f"{k:05d}.jpg", quality=int(kind[4:]))
            else:
                img.filter(ImageFilter.GaussianBlur(float(kind[4:]))).save(out / f"{k:05d}.png")
            k += 1
    (out / "done").write_text(f"{k}\n")
    return str(out)


def check_degradations(kinds: list[str]) -> list[str]:
    for kind in kinds:
        ok = (kind.startswith("jpeg") and kind[4:].isdigit() and 5 <= int(kind[4:]) <= 100) or (
            kind.startswith("blur") and kind[4:].replace(".", "", 1).isdigit())
        if not ok:
            raise SystemExit(f"--degrade: '{kind}' is not jpegQ (5-100) or blurS (px)")
    return kinds
