"""Real-vs-synthetic dataset assembly: many sources in, one balanced, grouped catalog out.

``assemble(real_specs, fake_specs, out_dir)`` writes ``out_dir/detector_catalog.csv``
(``filename,label,label_name,source,group,origin``) and the images it names, so that training is
just ``galaxymorph.train(data=f"catalog:{csv}", group_by="group")``.

Why every image is re-written: a detector learns whatever separates the classes, and the
cheapest tells are not about galaxies at all. Generated images are small PNGs (a 64 px GAN,
upsampled by whoever displays them); real ones are 423 px JPEGs with an 8x8 block grid. So every
image, real or generated, goes through the *same* chain here: centre crop -> antialiased resize
to the ``common_size`` (the smallest native resolution among the sources, so real images lose
the same high frequencies the generator never had) -> resize to ``image_size`` -> lossless PNG.
Neither side keeps its own size, resampling history or JPEG grid.

Why groups: an image and its augmentations, or the same latent vector drawn from a GAN at two
training stages, are near-duplicates; the ``group`` column keeps each such family in one fold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from galaxymorph.data.dataset import GalaxyDataset, open_dataset
from galaxymorph.data.imageio import is_image_path
from galaxymorph.data.provenance import read_sample_card
from galaxymorph.data.sources import FileSource, H5Source
from galaxymorph.data.specs import split_spec
from galaxymorph.detection.augment import Compression, Degradation
from galaxymorph.errors import ConfigError, DataError, ImageReadError
from galaxymorph.io_utils import atomic_path, write_json

log = logging.getLogger("galaxymorph")

CATALOG = "detector_catalog.csv"
ASSEMBLY = "assembly.json"
CLASS_NAMES = ["real", "synthetic"]
CLEAN_DIR = "clean"  # undegraded copies of augmented images
#: Real images kept out of training to set the thresholds on (``assemble(calibration_real=)``).
CALIBRATION_CATALOG = "calibration.csv"
CALIBRATION_DIR = "calibration"


@dataclass(frozen=True)
class Resampling:
    """The one chain every detector input goes through (see the module docstring).

    Calling it applies its own ``crop`` (how a detector frames survey inputs); ``apply`` takes
    the crop of the side an image comes from (assembly)."""

    image_size: int
    common_size: int | None = None  # resolution bottleneck; None: straight to image_size
    crop: float = 1.0

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.apply(image, self.crop)

    def apply(self, image: np.ndarray, crop: float = 1.0) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) uint8: crop, bottleneck, final size."""
        from galaxymorph.data.transforms import Preprocessing, prepare, resize

        first = self.image_size if not self.common_size else min(self.common_size, self.image_size)
        t = prepare(image, Preprocessing(first, crop))
        if first != self.image_size:
            t = resize(t, self.image_size, self.image_size)
        return t.contiguous()

    def to_dict(self) -> dict[str, Any]:
        """The resolution chain (crops are recorded per side, beside it)."""
        return {"image_size": self.image_size, "common_size": self.common_size}


@dataclass
class _Pool:
    """One spec's images on one side (0 real, 1 synthetic), with group ids and crop."""

    spec: str
    side: int
    dataset: GalaxyDataset
    groups: list[str]
    crop: float
    key: str
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    native: int | None = None
    excluded: int = 0
    duplicates: int = 0


# -- opening sources --------------------------------------------------------------------------


def open_images(spec: str) -> GalaxyDataset:
    """A dataset spec, or a plain folder of image files (labels are irrelevant to a detector)."""
    try:
        return open_dataset(spec)
    except DataError:
        kind, arg = split_spec(spec)
        folder = Path(arg if kind == "folder" and arg else spec).expanduser()
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p)) \
            if folder.is_dir() else []
        if not files:
            raise
        src = FileSource(files, np.zeros(len(files), dtype=np.int64), ["image"], spec, folder)
        return GalaxyDataset(src, np.arange(len(files)), np.zeros(len(files), dtype=np.int64),
                             ["image"], spec)


def source_key(ds: GalaxyDataset) -> str:
    """Where a dataset lives, independent of how its spec was spelt (for group ids)."""
    src = ds.source
    if isinstance(src, H5Source):
        return str(src.path.resolve())
    root = getattr(src, "root", None)
    return str(Path(root).resolve()) if root is not None else ds.spec


def group_ids(ds: GalaxyDataset) -> list[str]:
    """Near-duplicate families: a ``group`` column if the catalog has one; for a GAN sample set
    (``sample_card.json``) its generator run, seed and file name, since ``gan sample`` with the
    same seed draws the same latent vectors from every training stage of a run; otherwise the
    image itself."""
    meta = ds.source.metadata
    if meta is not None and "group" in meta.columns:
        return [f"group:{meta['group'].iloc[i]}" for i in ds.indices]
    card = read_sample_card(ds)
    if card is not None and "seed" in card:
        return [f"gan-z:{card.get('generator', '')}:{card['seed']}:{k}" for k in ds.ids]
    key = source_key(ds)
    return [f"{key}#{k}" for k in ds.ids]


def suggested_real_crop(fake_specs: list[str]) -> float | None:
    """The crop the generator was trained with (``sample_card.json``), if all fakes agree."""
    crops = set()
    for spec in fake_specs:
        try:
            card = read_sample_card(open_images(spec))
        except DataError:
            continue
        if card and card.get("source_crop") is not None:
            crops.add(float(card["source_crop"]))
    return crops.pop() if len(crops) == 1 else None


# -- balancing --------------------------------------------------------------------------------


def water_fill(available: list[int], total: int) -> list[int]:
    """Split ``total`` as evenly as possible over pools of the given sizes (small pools are
    used up and the rest is shared among the others)."""
    quotas = [0] * len(available)
    left = min(total, sum(available))
    open_ = [i for i, a in enumerate(available) if a > 0]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for i in list(open_):
            take = min(share, available[i] - quotas[i], left)
            quotas[i] += take
            left -= take
            if quotas[i] >= available[i]:
                open_.remove(i)
            if left == 0:
                break
    return quotas


def _native_size(pool: _Pool) -> int | None:
    """Side of the cropped region of the pool's first readable image (its native resolution)."""
    for i in pool.order[:20]:
        try:
            h, w = pool.dataset.read(int(i)).shape[:2]
        except ImageReadError:
            continue
        return max(1, round(min(h, w) * pool.crop))
    return None


# -- the assembly ------------------------------------------------------------------------------


def assemble(real_specs: list[str] | str, fake_specs: list[str] | str, out_dir: str | Path, *,
             image_size: int = 64, common_size: int | str | None = "auto",
             real_crop: float | None = None, fake_crop: float = 1.0,
             per_source_cap: int | None = None, max_per_side: int | None = None,
             balance: bool = True, exclude_groups: set[str] | None = None, seed: int = 0,
             augment: Degradation | None = None, compress_fakes: Compression | None = None,
             calibration_real: int = 0, screen_real: bool = False,
             progress: bool = True) -> Path:
    """Write a balanced real-vs-synthetic catalog; return the CSV's path.

    ``common_size``: ``"auto"`` (smallest native resolution among the sources), a number of
    pixels, or ``None`` (no bottleneck). ``real_crop`` defaults to the crop the generator was
    trained with when its ``sample_card.json`` says so, else 1.0. ``per_source_cap`` limits
    each spec; ``max_per_side`` each class. With ``balance`` both classes get the same count
    (the larger side subsampled, deterministically from ``seed``) and the synthetic side is
    shared evenly among the fake specs. ``exclude_groups`` leaves out images of those groups
    (how evaluation keeps to images the detector never trained on). ``augment``: blur, JPEG
    and resampling on both classes alike (training data; see :mod:`.augment`).
    ``compress_fakes``: JPEG-compress a share of the synthetic images before resampling
    (:class:`~galaxymorph.detection.augment.Compression`).
    ``screen_real``: leave out real images that are not galaxy cutouts (blank, or no source
    at the centre: :func:`galaxymorph.data.quality.image_problem`, e.g. a cutout service's
    error page), each replaced by the next candidate of its pool and listed in
    ``assembly.json``; a detector that calls such an image "not a real galaxy" is right.
    ``calibration_real``: also keep up to this many *other* real images, never trained on,
    through the same chain but undegraded, in ``calibration/`` (``calibration.csv``): the
    images the decision thresholds are set on. Real images are usually plentiful beside the
    balanced set, and a false-alarm rate of 1% set on a validation fold of 30 real images is
    only ever the highest of them (:func:`~galaxymorph.detection.scoring.false_alarm_rank`).
    """
    real_specs = [real_specs] if isinstance(real_specs, str) else list(real_specs)
    fake_specs = [fake_specs] if isinstance(fake_specs, str) else list(fake_specs)
    if not real_specs or not fake_specs:
        raise ConfigError("a detector needs at least one real spec (--real) and one synthetic "
                          "spec (--fake)")
    if real_crop is None:
        real_crop = suggested_real_crop(fake_specs) or 1.0
    from galaxymorph.data.transforms import Preprocessing

    for crop in (real_crop, fake_crop):
        Preprocessing(image_size, crop)  # validates size and crop with the usual messages
    out_dir = Path(out_dir)
    if (out_dir / CATALOG).exists():
        raise ConfigError(f"already holds an assembled data set ({CATALOG}); choose another folder",
                          out_dir)
    rng = np.random.default_rng(seed)
    exclude = exclude_groups or set()
    pools: list[_Pool] = []
    seen: set[tuple[int, str, str]] = set()
    for side, specs, crop in ((0, real_specs, real_crop), (1, fake_specs, fake_crop)):
        for spec in specs:
            ds = open_images(spec)
            groups = group_ids(ds)
            pool = _Pool(spec, side, ds, groups, crop, source_key(ds))
            keep = []
            for i, g in enumerate(groups):
                if g in exclude:
                    pool.excluded += 1
                elif (side, ds.ids[i], pool.key) in seen:
                    pool.duplicates += 1  # the same file given twice on one side
                else:
                    seen.add((side, ds.ids[i], pool.key))
                    keep.append(i)
            order = np.asarray(keep, dtype=np.int64)[rng.permutation(len(keep))]
            pool.order = order[:per_source_cap] if per_source_cap else order
            pools.append(pool)
    for pool in pools:
        pool.native = _native_size(pool)
    if common_size == "auto":
        natives = [p.native for p in pools if p.native]
        common = min(natives) if natives else None
    elif common_size in (None, "none", 0):
        common = None
    else:
        common = int(common_size)
        if common < 8:
            raise ConfigError(f"common_size must be at least 8 pixels, got {common}")
    resampling = Resampling(image_size, common if common and common < image_size else None)

    sides = [[p for p in pools if p.side == s] for s in (0, 1)]
    avail = [[len(p.order) for p in side] for side in sides]
    if balance:
        n = min(sum(avail[0]), sum(avail[1]), max_per_side or math.inf)
        quotas = [water_fill(a, int(n)) for a in avail]
    else:
        quotas = [water_fill(a, int(min(sum(a), max_per_side or math.inf))) for a in avail]
    for s, name in enumerate(CLASS_NAMES):
        if sum(quotas[s]) == 0:
            specs = real_specs if s == 0 else fake_specs
            raise DataError(f"no {name} images left to use from {', '.join(specs)}"
                            + (" (all belong to the detector's training data)" if exclude else ""))

    # The calibration reserve comes from the *end* of each real pool's shuffled order, so it
    # never meets the training candidates (which replace unreadable images from the front).
    # Each pool keeps 5% spare candidates for the training images, so a few unreadable files
    # are still replaced rather than unbalancing the set.
    reserve: list[_Pool] = []
    reserved: dict[int, int] = {}
    if calibration_real > 0:
        spare = [max(0, len(p.order) - q - math.ceil(0.05 * q))
                 for p, q in zip(sides[0], quotas[0], strict=True)]
        shares = water_fill(spare, int(min(sum(spare), calibration_real)))
        for pool, c in zip(sides[0], shares, strict=True):
            reserve.append(replace(pool, order=pool.order[len(pool.order) - c:]))
            pool.order = pool.order[:len(pool.order) - c]
            reserved[id(pool)] = c
    screened: list[str] = []
    rows, errors = _materialise(out_dir, sides, quotas, resampling, progress, augment, seed,
                                compress_fakes, screened if screen_real else None)
    calibration = 0
    if reserve:
        cal_rows, cal_errors = _materialise(out_dir / CALIBRATION_DIR, [reserve, []],
                                            [[len(p.order) for p in reserve], []], resampling,
                                            progress, None, seed,
                                            screened=screened if screen_real else None)
        errors += cal_errors
        cal = pd.DataFrame(cal_rows, columns=["filename", "label", "label_name", "source", "group",
                                              "origin", "clean"])
        cal["filename"] = CALIBRATION_DIR + "/" + cal["filename"]
        cal["clean"] = cal["filename"]
        with atomic_path(out_dir / CALIBRATION_CATALOG) as tmp:
            cal.to_csv(tmp, index=False)
        calibration = len(cal)
    if balance:
        rows = _rebalance(out_dir, rows)
    df = pd.DataFrame(rows, columns=["filename", "label", "label_name", "source", "group", "origin",
                                     "clean"])
    if df["label"].nunique() < 2:
        raise DataError("after skipping unreadable images one class is empty", out_dir)
    with atomic_path(out_dir / CATALOG) as tmp:
        df.to_csv(tmp, index=False)
    counts = df.groupby("source").size().to_dict()
    info = {
        "real": real_specs, "fake": fake_specs, "class_names": CLASS_NAMES,
        "resampling": resampling.to_dict(), "real_crop": real_crop, "fake_crop": fake_crop,
        "balance": balance, "seed": seed, "per_source_cap": per_source_cap,
        "augment": augment.to_dict() if augment is not None else None,
        "compress_fakes": compress_fakes.to_dict() if compress_fakes is not None else None,
        "max_per_side": max_per_side,
        "counts": {name: int((df["label"] == i).sum()) for i, name in enumerate(CLASS_NAMES)},
        "sources": [{"spec": p.spec, "side": CLASS_NAMES[p.side], "key": p.key, "crop": p.crop,
                     "native_size": p.native, "available": len(p.order) + reserved.get(id(p), 0),
                     "reserved_for_calibration": reserved.get(id(p), 0),
                     "used": int(counts.get(p.spec, 0)), "excluded_seen_groups": p.excluded,
                     "duplicates_dropped": p.duplicates} for p in pools],
        "unreadable": len(errors), "unreadable_examples": errors[:20],
        "calibration_real": calibration,
        "screen_real": screen_real,
        "screened_real": len(screened), "screened_real_examples": screened[:20],
        "calibration_catalog": CALIBRATION_CATALOG if reserve else None,
    }
    write_json(out_dir / ASSEMBLY, info)
    log.info("assembled %d real and %d synthetic images (common size %s, %d px) in %s",
             info["counts"]["real"], info["counts"]["synthetic"], resampling.common_size,
             image_size, out_dir)
    return out_dir / CATALOG


def _materialise(out_dir: Path, sides: list[list[_Pool]], quotas: list[list[int]],
                 resampling: Resampling, progress: bool, augment: Degradation | None = None,
                 seed: int = 0, compress_fakes: Compression | None = None,
                 screened: list[str] | None = None) -> tuple[list[list[Any]], list[str]]:
    """Read, resample and write each chosen image; an unreadable one (or, with ``screened``
    given, a real image that is no galaxy cutout: appended to it) is replaced by the next
    candidate of its pool, so a few bad files do not unbalance the set."""
    from galaxymorph.progress import progress_bar

    rows: list[list[Any]] = []
    errors: list[str] = []
    jobs = [(s, k, pool, quotas[s][k]) for s in (0, 1) for k, pool in enumerate(sides[s])]
    total = sum(q for *_, q in jobs)
    with progress_bar("assembling detector data", total, unit="images", enabled=progress) as bar:
        for kind, item in _produce(out_dir, jobs, resampling, augment, seed, compress_fakes,
                                   screened is not None):
            if kind == "row":  # the bar counts images written, never the ones replaced
                rows.append(item)
                bar.advance()
            elif kind == "error":
                errors.append(item)
            elif screened is not None:
                screened.append(item)
    return rows, errors


def _produce(out_dir: Path, jobs: list[tuple[int, int, _Pool, int]], resampling: Resampling,
             augment: Degradation | None, seed: int,
             compress_fakes: Compression | None = None,
             screen_real: bool = False) -> Iterator[tuple[str, Any]]:
    from galaxymorph.data.quality import image_problem

    for s, k, pool, quota in jobs:
        folder = out_dir / "images" / CLASS_NAMES[s]
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for i in pool.order:
            if written >= quota:
                break
            try:
                img = pool.dataset.read(int(i))
            except ImageReadError as exc:
                yield "error", str(exc)
                continue
            if screen_real and s == 0:
                found = image_problem(img)
                if found is not None:
                    yield "screened", f"{pool.dataset.location(int(i))}: {found[0]}"
                    continue
            if compress_fakes is not None and s == 1:  # its own stream: augment's draws stay
                img = compress_fakes(img, np.random.default_rng([seed, s, k, written, 1]))
            t = resampling.apply(img, pool.crop)
            rel = f"images/{CLASS_NAMES[s]}/{k:02d}_{written:06d}.png"
            clean = rel
            if augment is not None:  # one deterministic draw per stored image
                # The undegraded copy: thresholds and typicality are calibrated on inputs
                # as they will arrive, not on the training degradations.
                clean = f"{CLEAN_DIR}/{rel}"
                _save_png(out_dir / clean, t)
                t = augment(t, np.random.default_rng([seed, s, k, written]))
            _save_png(out_dir / rel, t)
            written += 1
            yield "row", [rel, s, CLASS_NAMES[s], pool.spec, pool.groups[int(i)],
                         pool.dataset.location(int(i)), clean]
        if written < quota:
            log.warning("%s: only %d of %d images usable (unreadable or screened ones: assembly.json)",
                        pool.spec, written, quota)


def _save_png(path: Path, t: torch.Tensor) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(t.permute(1, 2, 0).numpy()).save(tmp, format="PNG")


def _rebalance(out_dir: Path, rows: list[list[Any]]) -> list[list[Any]]:
    """Drop images of the larger class (from its largest source) until both are equal."""
    counts = [sum(1 for r in rows if r[1] == s) for s in (0, 1)]
    big = int(np.argmax(counts))
    excess = counts[big] - counts[1 - big]
    while excess > 0:
        per_source: dict[str, int] = {}
        for r in rows:
            if r[1] == big:
                per_source[r[3]] = per_source.get(r[3], 0) + 1
        worst = max(per_source, key=per_source.__getitem__)
        last = max(j for j, r in enumerate(rows) if r[1] == big and r[3] == worst)
        for rel in {rows[last][0], rows[last][6]}:
            (out_dir / rel).unlink(missing_ok=True)
        del rows[last]
        excess -= 1
    return rows


def read_catalog(path: str | Path) -> pd.DataFrame:
    """An assembled catalog (checked for the columns a detector needs)."""
    path = Path(path)
    if not path.exists():
        raise DataError("detector catalog not found", path)
    df = pd.read_csv(path)
    missing = {"filename", "label", "group", "source"} - set(df.columns)
    if missing:
        raise DataError(f"not a detector catalog (missing {sorted(missing)})", path)
    return df
