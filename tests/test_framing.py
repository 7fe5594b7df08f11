"""Automatic framing: the frame follows the galaxy's measured size, not the cutout's scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxymorph.data.framing import petrosian_radius
from galaxymorph.data.synthetic import SYNTHETIC_CLASSES, render_galaxy
from galaxymorph.data.transforms import Preprocessing, crop_side, prepare, zoom_field
from galaxymorph.errors import ConfigError, ModelError

AUTO = Preprocessing(image_size=48, crop=0.4, framing="auto")


def _side(image: np.ndarray, pre: Preprocessing = AUTO) -> int:
    import torch

    return crop_side(torch.from_numpy(image).permute(2, 0, 1), pre)


@pytest.mark.parametrize("kind", SYNTHETIC_CLASSES)
def test_auto_frame_is_the_same_in_galaxy_units_at_every_scale(kind):
    for seed in range(2):
        img = render_galaxy(kind, 192, seed)
        base = _side(img)
        assert 0.2 * 192 < base < 192  # a galaxy, framed with some sky around it
        for zoom in (0.5, 0.7, 1.4):
            # The frame scales with the galaxy (within 20%); a fixed crop would stay put and
            # show the galaxy 0.5x to 1.4x as large.
            ratio = _side(zoom_field(img, zoom)) / (base * zoom)
            assert 0.8 < ratio < 1.2, (kind, seed, zoom, ratio)


def test_zoom_field_pads_with_sky_and_crops():
    img = render_galaxy("Elliptical", 96, 0)
    small, large = zoom_field(img, 0.5), zoom_field(img, 2.0)
    assert small.shape == large.shape == img.shape
    corner = img[:12, :12].reshape(-1, 3).mean(0)
    assert np.abs(small[0, 0].astype(float) - corner).max() < 3  # padded with the sky level
    assert large[48].mean() > img[48].mean()  # the bright centre now fills the middle row


@pytest.mark.parametrize("image", [
    np.zeros((100, 100, 3), np.uint8),
    np.full((64, 80, 3), 200, np.uint8),
    np.random.default_rng(0).normal(20, 4, (120, 120, 3)).clip(0, 255).astype(np.uint8),
    np.zeros((5, 5, 3), np.uint8),
], ids=["black", "flat", "sky-noise", "tiny"])
def test_images_without_a_central_galaxy_fall_back_to_the_fixed_crop(image):
    assert petrosian_radius(image) is None
    short = min(image.shape[:2])
    assert _side(image) == max(1, round(0.4 * short))
    assert prepare(image, AUTO).shape == (3, 48, 48)


def test_off_centre_sources_are_not_the_galaxy():
    img = np.zeros((128, 128, 3), np.uint8)
    img[10:30, 10:30] = 220  # a bright star in the corner, nothing at the centre
    assert petrosian_radius(img) is None


def test_framing_is_validated():
    with pytest.raises(ConfigError, match="framing"):
        Preprocessing(framing="petrosian")
    with pytest.raises(ConfigError, match="frame_radii"):
        Preprocessing(framing="auto", frame_radii=0.0)
    assert Preprocessing(framing="auto").fixed(0.5) == Preprocessing(crop=0.5)


def _card(tmp_path, **extra) -> dict:
    raw = {"architecture": "cnn2", "class_names": ["a", "b"], "image_size": 32, "crop": 0.5} | extra
    (tmp_path / "model_card.json").write_text(json.dumps(raw))
    return raw


def test_old_cards_load_as_fixed_framing_and_new_ones_keep_auto(tmp_path):
    from galaxymorph.models.artifact import read_card

    _card(tmp_path)
    assert read_card(tmp_path).preprocessing == Preprocessing(32, 0.5, "fixed")
    _card(tmp_path, framing="auto", frame_radii=2.0)
    assert read_card(tmp_path).preprocessing == Preprocessing(32, 0.5, "auto", 2.0)
    _card(tmp_path, framing="isophotal")
    with pytest.raises(ModelError, match="framing"):
        read_card(tmp_path)


def test_auto_framing_travels_from_training_to_predict_and_crop_overrides_it(
        tmp_path, inference_catalog):
    import galaxymorph
    from galaxymorph.models.loading import load_classifier
    from galaxymorph.training.config import TrainConfig

    run = galaxymorph.train(data=f"catalog:{inference_catalog}", model="cnn2", epochs=1,
                            image_size=24, framing="auto", frame_radii=1.5, out=tmp_path / "run",
                            progress=False, cache=False, threads=2)
    assert TrainConfig.load(run.run_dir / "config.yaml").framing == "auto"
    clf = load_classifier(run.run_dir)
    assert clf.preprocessing == Preprocessing(24, 1.0, "auto", 1.5)
    fixed = clf.with_crop(0.5)
    assert fixed.preprocessing == Preprocessing(24, 0.5, "fixed", 1.5)
    assert clf.preprocessing.framing == "auto"  # the loaded model itself is unchanged
    images = sorted((inference_catalog.parent / "images").glob("*.png"))[:3]
    auto_rows = galaxymorph.predict(images, model=run.run_dir, progress=False, workers=0)
    crop_rows = galaxymorph.predict(images, model=run.run_dir, progress=False, workers=0, crop=0.5)
    prob = [c for c in auto_rows.columns if c.startswith("prob_")]
    assert prob
    assert not np.allclose(auto_rows[prob].to_numpy(float), crop_rows[prob].to_numpy(float))
    with pytest.raises(ConfigError, match="crop"):
        clf.with_crop(0.0)


@pytest.mark.parametrize("shape, dtype", [((423, 423, 3), np.uint8), ((600, 401, 3), np.uint8),
                                          ((4000, 3000, 3), np.uint8), ((90, 70), np.uint8),
                                          ((300, 260, 3), np.float32)])
def test_work_copy_is_the_block_mean_of_the_grey_image(shape, dtype):
    """The fast strided sums give what the plain mean over channels and blocks gives."""
    from galaxymorph.data.framing import _WORK_SIDE, _work_copy

    rng = np.random.default_rng(0)
    image = (rng.integers(0, 256, shape).astype(dtype) if dtype == np.uint8
             else rng.random(shape).astype(dtype) * 255)
    got, f = _work_copy(image)
    grey = image.astype(np.float64).mean(axis=-1) if image.ndim == 3 else image.astype(np.float64)
    h, w = grey.shape
    assert f == max(1, min(h, w) // _WORK_SIDE)
    want = grey[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_radius_does_not_depend_on_images_of_other_sizes_seen_before():
    """The per-size geometry cache: alternating sizes gives each image its own radius."""
    from galaxymorph.data.framing import _geometry

    small = render_galaxy(SYNTHETIC_CLASSES[0], 160, rng=3)
    large = render_galaxy(SYNTHETIC_CLASSES[0], 300, rng=3)
    first = petrosian_radius(small)
    petrosian_radius(large)
    assert petrosian_radius(small) == first
    r, bins = _geometry(*small.shape[:2])
    assert not r.flags.writeable and not bins.flags.writeable  # shared between calls
