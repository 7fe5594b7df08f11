"""Preprocessing shapes and the galaxy-aware symmetry augmentation (with chirality)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxymorph.data.transforms import (
    Preprocessing,
    TrainAugment,
    center_crop,
    dihedral,
    is_mirror,
    prepare,
    resize,
    swap_table,
)
from galaxymorph.errors import ConfigError
from makedata import galaxy_image


@pytest.mark.parametrize(("shape", "crop", "size"), [
    ((64, 64, 3), 1.0, 32), ((424, 424, 3), 0.5, 96), ((50, 80, 3), 1.0, 40), ((30, 30, 3), 1.0, 30),
])
def test_prepare_shapes(shape, crop, size):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = prepare(img, Preprocessing(image_size=size, crop=crop))
    assert out.shape == (3, size, size) and out.dtype == torch.uint8 and out.is_contiguous()


def test_prepare_centre_crop_keeps_the_centre():
    img = np.zeros((100, 100, 3), np.uint8)
    img[25:75, 25:75] = 255  # the central half is white
    out = prepare(img, Preprocessing(image_size=50, crop=0.5))
    assert out.min() == 255  # only the white centre survives a 0.5 crop
    np.testing.assert_array_equal(prepare(img, Preprocessing(image_size=100)).permute(1, 2, 0), img)


def test_prepare_accepts_read_only_and_flipped_arrays():
    img = galaxy_image(1, 40)
    ro = img.copy()
    ro.flags.writeable = False
    flipped = img[::-1]
    pre = Preprocessing(image_size=40)
    np.testing.assert_array_equal(prepare(ro, pre).permute(1, 2, 0).numpy(), img)
    np.testing.assert_array_equal(prepare(flipped, pre).permute(1, 2, 0).numpy(), flipped)


@pytest.mark.parametrize(("hw", "side", "size"), [
    ((423, 423), 156, 96), ((424, 424), 157, 96), ((100, 80), 61, 128), ((50, 50), 50, 17),
    ((256, 256), 255, 96), ((33, 47), 20, 20),
])
@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_crop_and_resize_give_torchvisions_pixels(hw, side, size, layout):
    """prepare's torch-only crop and resize (no torchvision import on the prediction path)
    are the very pixels of torchvision's center_crop + antialiased resize: uint8 from a decoded
    (H, W, 3) array as prepare sees it, contiguous CHW, float."""
    from torchvision.transforms.v2 import functional as TF

    img = np.random.default_rng(side).integers(0, 256, (*hw, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)
    if layout == "chw":
        t = t.contiguous()
    ours = resize(center_crop(t, side, side), size, size)
    theirs = TF.resize(TF.center_crop(t, [side, side]), [size, size], antialias=True)
    assert ours.dtype == torch.uint8 and torch.equal(ours, theirs)
    f = t.float() / 255
    torch.testing.assert_close(resize(center_crop(f, side, side), size, size),
                               TF.resize(TF.center_crop(f, [side, side]), [size, size], antialias=True),
                               rtol=0, atol=0)
    batch = t.unsqueeze(0).expand(2, -1, -1, -1)
    assert torch.equal(resize(batch, size, size), TF.resize(batch, [size, size], antialias=True))


def test_center_crop_refuses_a_window_larger_than_the_image():
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(torch.zeros(3, 10, 10), 11, 11)


def test_preprocessing_validates():
    with pytest.raises(ConfigError, match="crop"):
        Preprocessing(crop=0.0)
    with pytest.raises(ConfigError, match="image_size"):
        Preprocessing(image_size=4)


def _asym() -> torch.Tensor:
    return torch.from_numpy(galaxy_image(2, 24)).permute(2, 0, 1).contiguous()


def test_dihedral_group_has_eight_distinct_elements_and_is_closed():
    x = _asym()
    images = [dihedral(x, k) for k in range(8)]
    assert len({im.numpy().tobytes() for im in images}) == 8
    for a in range(8):
        for b in range(8):  # composing two symmetries gives one of the eight
            composed = dihedral(dihedral(x, a), b)
            assert any(torch.equal(composed, im) for im in images)
        # and each one has an inverse
        assert any(torch.equal(dihedral(images[a], b), x) for b in range(8))
    assert [is_mirror(k) for k in range(8)] == [False] * 4 + [True] * 4
    # Mirrors really are mirrors: a left-right flip is one of them.
    assert any(torch.equal(torch.flip(x, dims=(-1,)), images[k]) for k in range(4, 8))


def _rotations(x: torch.Tensor) -> list[torch.Tensor]:
    return [dihedral(x, k) for k in range(4)]


def test_mirror_swaps_chiral_labels_and_rotation_keeps_them():
    x = _asym()
    aug = TrainAugment(num_classes=4, chiral_pairs=[(1, 2)], chirality="swap", zoom=0, shift=0,
                       brightness=0, seed=0)
    seen = set()
    for _ in range(64):
        y, label = aug(x, 1)
        mirrored = not any(torch.equal(y, r) for r in _rotations(x))
        assert label == (2 if mirrored else 1)
        seen.add(mirrored)
        _, other = aug(x, 3)
        assert other == 3  # a class without handedness never changes
    assert seen == {True, False}
    assert swap_table(4, [(1, 2)]) == [0, 2, 1, 3]


def test_ignore_with_chiral_pairs_refuses():
    with pytest.raises(ConfigError, match=r"\[\(1, 2\)\] are mirror images.*'swap' or 'no-flip'"):
        TrainAugment(num_classes=3, chiral_pairs=[(1, 2)], chirality="ignore")
    TrainAugment(num_classes=3, chiral_pairs=[], chirality="ignore")  # fine without chirality
    with pytest.raises(ConfigError, match="chirality must be"):
        TrainAugment(num_classes=3, chirality="sometimes")


@pytest.mark.parametrize("pairs", [[(1, 2)], []])
def test_no_flip_never_mirrors(pairs):
    x = _asym()
    aug = TrainAugment(num_classes=3, chiral_pairs=pairs, chirality="no-flip", zoom=0, shift=0,
                       brightness=0, seed=1)
    outs = [aug(x, 1) for _ in range(48)]
    assert all(label == 1 for _, label in outs)
    assert all(any(torch.equal(y, r) for r in _rotations(x)) for y, _ in outs)
    assert len({y.numpy().tobytes() for y, _ in outs}) == 4  # but all four rotations occur


def test_seeded_augment_is_reproducible_and_keeps_dtype_and_shape():
    x = _asym()
    a = TrainAugment(num_classes=2, seed=7)
    b = TrainAugment(num_classes=2, seed=7)
    for _ in range(5):
        ya, la = a(x, 0)
        yb, lb = b(x, 0)
        assert torch.equal(ya, yb) and la == lb
        assert ya.shape == x.shape and ya.dtype == torch.uint8
