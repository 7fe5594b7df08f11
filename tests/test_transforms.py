"""Preprocessing shapes and the galaxy-aware symmetry augmentation (with chirality)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxymorph.data.transforms import (
    Preprocessing,
    TrainAugment,
    dihedral,
    is_mirror,
    prepare,
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
