"""Synthetic galaxies: shapes, determinism, classes that differ the way real ones do, file outputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from galaxymorph.data import open_dataset
from galaxymorph.data.classes import GALAXY10_DECALS
from galaxymorph.data.synthetic import (
    GALAXY10_DECALS_LABEL,
    SYNTHETIC_CLASSES,
    make_synthetic_arrays,
    preview_grid,
    render_galaxy,
    write_synthetic_catalog,
    write_synthetic_h5,
)

# -- simple morphology measurements (CAS-like), on the luminance of the main object -----------


def _lum(img: np.ndarray) -> np.ndarray:
    lum = img.astype(np.float64).mean(axis=2)
    return lum - np.median(lum)


def _galaxy_weights(img: np.ndarray) -> np.ndarray:
    """Background-subtracted light of the brightest connected object (drops stars and noise)."""
    lum = _lum(img)
    noise = 1.4826 * np.median(np.abs(lum))
    labels, n = ndimage.label(ndimage.gaussian_filter(lum, 1.0) > 3 * noise)
    assert n > 0, "no object above the noise"
    flux = ndimage.sum(lum, labels, index=np.arange(1, n + 1))
    return np.where(labels == np.argmax(flux) + 1, np.clip(lum, 0, None), 0.0)


def _moments(w: np.ndarray) -> tuple[float, float, float, float]:
    """Centroid, axis ratio (minor/major) and position angle from second moments."""
    y, x = np.indices(w.shape)
    t = w.sum()
    cx, cy = (w * x).sum() / t, (w * y).sum() / t
    xx = (w * (x - cx) ** 2).sum() / t
    yy = (w * (y - cy) ** 2).sum() / t
    xy = (w * (x - cx) * (y - cy)).sum() / t
    ev = np.linalg.eigvalsh([[xx, xy], [xy, yy]])
    return cx, cy, float(np.sqrt(ev[0] / ev[1])), 0.5 * np.arctan2(2 * xy, xx - yy)


def axis_ratio(img: np.ndarray) -> float:
    return _moments(_galaxy_weights(img))[2]


def azimuthal_structure(img: np.ndarray) -> float:
    """RMS deviation from the mean along elliptical annuli, relative to the mean light."""
    w = _galaxy_weights(img)
    cx, cy, q, pa = _moments(w)
    y, x = np.indices(w.shape)
    u = np.cos(pa) * (x - cx) + np.sin(pa) * (y - cy)
    v = -np.sin(pa) * (x - cx) + np.cos(pa) * (y - cy)
    r = np.sqrt(u**2 + (v / q) ** 2).astype(int).ravel()
    lum = _lum(img).ravel()
    means = np.bincount(r, lum) / np.maximum(np.bincount(r), 1)
    m = w.ravel() > 0
    return float(np.sqrt(np.mean((lum - means[r])[m] ** 2)) / np.mean(lum[m]))


def asymmetry(img: np.ndarray) -> float:
    """Rotational (180°) asymmetry about the light centroid, as in CAS."""
    w = _galaxy_weights(img)
    cx, cy, *_ = _moments(w)
    lum = _lum(img)
    c = (np.array(lum.shape) - 1) / 2
    shifted = ndimage.shift(lum, (c[0] - cy, c[1] - cx), order=1)
    m = ndimage.shift((w > 0).astype(float), (c[0] - cy, c[1] - cx), order=0) > 0
    m |= m[::-1, ::-1]
    return float(np.abs(shifted - shifted[::-1, ::-1])[m].sum() / (2 * np.abs(shifted)[m].sum()))


def redness(img: np.ndarray) -> float:
    w = _galaxy_weights(img) > 0
    rgb = img.astype(np.float64)[w]
    return float((rgb[:, 0].sum() - rgb[:, 2].sum()) / (rgb[:, 0].sum() + rgb[:, 2].sum()))


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic_arrays(24, size=64, seed=11)


def _per_class(sample, metric) -> dict[str, float]:
    images, labels = sample
    return {name: float(np.mean([metric(images[i]) for i in np.flatnonzero(labels == k)]))
            for k, name in enumerate(SYNTHETIC_CLASSES)}


# -- tests ----------------------------------------------------------------------------------------


def test_shapes_dtypes_and_class_balance(sample):
    images, labels = sample
    assert images.shape == (96, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (96,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [24, 24, 24, 24]
    assert len(set(labels[:12].tolist())) > 1, "classes should come shuffled"
    for kind in SYNTHETIC_CLASSES:
        img = render_galaxy(kind, 48, np.random.default_rng(0))
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        assert 5 < img.mean() < 120 and img.max() > 100  # a visible object on a dark sky


def test_deterministic_for_a_seed():
    a_img, a_lab = make_synthetic_arrays(3, size=32, seed=5)
    b_img, b_lab = make_synthetic_arrays(3, size=32, seed=5)
    c_img, _ = make_synthetic_arrays(3, size=32, seed=6)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert np.array_equal(render_galaxy("Spiral", 32, 9), render_galaxy("spiral", 32, 9))
    assert len({render_galaxy("Merger", 32, s).tobytes() for s in range(5)}) == 5


def test_counts_by_name_and_bad_arguments():
    _, labels = make_synthetic_arrays({"Edge-on": 3, "merger": 2}, size=32)
    assert sorted(labels.tolist()) == [2, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="unknown synthetic galaxy kind"):
        render_galaxy("Irregular", 32, 0)
    with pytest.raises(ValueError, match="at least 16"):
        render_galaxy("Spiral", 8, 0)
    with pytest.raises(ValueError, match="negative"):
        make_synthetic_arrays({"Spiral": -1})


def test_edge_on_is_flatter_than_elliptical(sample):
    q = _per_class(sample, axis_ratio)
    assert q["Edge-on"] < 0.5 < 0.7 < q["Elliptical"], q
    assert q["Edge-on"] < 0.6 * q["Elliptical"], q


def test_spiral_has_azimuthal_structure_elliptical_does_not(sample):
    s = _per_class(sample, azimuthal_structure)
    assert s["Spiral"] > 1.3 * s["Elliptical"], s


def test_mergers_are_asymmetric(sample):
    a = _per_class(sample, asymmetry)
    assert a["Merger"] > 2 * a["Elliptical"], a
    assert a["Merger"] > 1.2 * a["Spiral"], a


def test_ellipticals_are_redder_than_spirals(sample):
    r = _per_class(sample, redness)
    assert r["Elliptical"] > r["Spiral"] + 0.1, r


def test_rendering_is_fast():
    rng = np.random.default_rng(0)
    render_galaxy("Spiral", 64, rng)  # warm-up (grid cache, imports)
    start = time.perf_counter()
    for i in range(40):
        render_galaxy(SYNTHETIC_CLASSES[i % 4], 64, rng)
    per_image = (time.perf_counter() - start) / 40
    assert per_image < 0.015, f"{per_image * 1e3:.1f} ms per 64 px image"


def test_catalog_loads_with_open_dataset(tmp_path):
    csv = write_synthetic_catalog(tmp_path / "syn", {"Elliptical": 3, "Spiral": 2, "Edge-on": 4,
                                                     "Merger": 1}, size=32, seed=3)
    assert csv == tmp_path / "syn" / "labels.csv"
    ds = open_dataset(f"catalog:{csv}")
    assert ds.class_names == SYNTHETIC_CLASSES
    assert ds.class_counts().tolist() == [3, 2, 4, 1]
    images, labels = make_synthetic_arrays({"Elliptical": 3, "Spiral": 2, "Edge-on": 4,
                                            "Merger": 1}, size=32, seed=3)
    assert np.array_equal(ds.labels, labels)
    for i in range(len(ds)):
        assert np.array_equal(ds.read(i), images[i])  # PNG is lossless
    assert sorted(p.name for p in (tmp_path / "syn" / "images").iterdir()) == \
        [f"syn_{i:06d}.png" for i in range(10)]  # no temporary files left behind
    assert open_dataset(tmp_path / "syn").class_counts().tolist() == [3, 2, 4, 1]


def test_catalog_as_jpeg(tmp_path):
    csv = write_synthetic_catalog(tmp_path, 2, size=32, seed=1, fmt="jpg")
    ds = open_dataset(csv)
    assert len(ds) == 8 and ds.location(0).endswith(".jpg")
    assert ds.read(0).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="fmt"):
        write_synthetic_catalog(tmp_path, 1, fmt="gif")


def test_h5_loads_as_galaxy10(tmp_path):
    path = write_synthetic_h5(tmp_path / "g10.h5", 3, size=40, seed=2)
    ds = open_dataset(f"galaxy10-decals:{path}")
    assert ds.class_names == GALAXY10_DECALS
    counts = ds.class_counts()
    for name, index in GALAXY10_DECALS_LABEL.items():
        assert counts[index] == 3, name
    assert counts.sum() == 12
    assert GALAXY10_DECALS[GALAXY10_DECALS_LABEL["Edge-on"]].startswith("Edge-on")
    images, _ = make_synthetic_arrays(3, size=40, seed=2)
    assert np.array_equal(ds.read(5), images[5])
    assert set(ds.source.metadata.columns) == {"ra", "dec", "redshift", "pxscale"}


def test_preview_grid_layout():
    images, _ = make_synthetic_arrays(2, size=16)
    grid = preview_grid(images, ncols=3, pad=1)
    assert grid.shape == (3 * 17 + 1, 3 * 17 + 1, 3)
    assert np.array_equal(grid[1:17, 1:17], images[0])
