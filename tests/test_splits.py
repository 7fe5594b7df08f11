"""Train/val/test splits: reproducible, stratified, disjoint, and leak-free across groups."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxymorph.data.splits import FOLDS, Split, make_split
from galaxymorph.errors import DataError


@pytest.fixture
def imbalanced() -> tuple[list[str], np.ndarray]:
    """1000 images: 700 / 200 / 100 in three classes, shuffled."""
    labels = np.repeat([0, 1, 2], [700, 200, 100])
    np.random.default_rng(1).shuffle(labels)
    return [f"img{i:04d}" for i in range(len(labels))], labels


def test_same_seed_same_split_other_seed_other_split(imbalanced):
    ids, labels = imbalanced
    a, b = make_split(ids, labels, seed=3), make_split(ids, labels, seed=3)
    c = make_split(ids, labels, seed=4)
    assert a.to_dict() == b.to_dict()
    assert set(a.test) != set(c.test) and set(a.val) != set(c.val)


def test_stratified_proportions(imbalanced):
    ids, labels = imbalanced
    split = make_split(ids, labels, seed=0, fractions=(0.7, 0.15, 0.15))
    label_of = dict(zip(ids, labels.tolist(), strict=True))
    for fold, frac in zip(FOLDS, (0.7, 0.15, 0.15), strict=True):
        got = np.bincount([label_of[k] for k in split.fold(fold)], minlength=3)
        np.testing.assert_allclose(got, np.array([700, 200, 100]) * frac, atol=1)


def test_folds_are_disjoint_and_cover_everything_in_dataset_order(imbalanced):
    ids, labels = imbalanced
    split = make_split(ids, labels, seed=0)
    folds = [split.fold(f) for f in FOLDS]
    assert sum(len(f) for f in folds) == len(ids)
    assert set().union(*map(set, folds)) == set(ids)
    assert all(not set(x) & set(y) for i, x in enumerate(folds) for y in folds[i + 1:])
    order = {k: n for n, k in enumerate(ids)}
    assert all(f == sorted(f, key=order.__getitem__) for f in folds)


def test_rare_class_still_reaches_val_and_test():
    labels = np.array([0] * 50 + [1] * 3)
    split = make_split([str(i) for i in range(53)], labels, seed=0)
    rare = {"50", "51", "52"}
    assert all(rare & set(split.fold(f)) for f in FOLDS)


def test_groups_never_cross_folds():
    # 60 source galaxies, each with 4 derived images (crops, GAN samples...).
    ids, labels, groups = [], [], []
    for g in range(60):
        for k in range(4):
            ids.append(f"g{g}_{k}")
            labels.append(g % 3)
            groups.append(f"src{g}")
    split = make_split(ids, np.array(labels), seed=5, groups=groups)
    fold_of = {k: f for f in FOLDS for k in split.fold(f)}
    for g in range(60):
        assert len({fold_of[f"g{g}_{k}"] for k in range(4)}) == 1, f"group src{g} is split"
    assert all(len(split.fold(f)) > 0 for f in FOLDS)


def test_save_load_round_trip(tmp_path, imbalanced):
    ids, labels = imbalanced
    split = make_split(ids, labels, seed=2, spec="catalog:x.csv", label_map="gz1-4")
    path = split.save(tmp_path / "run" / "split.json")
    loaded = Split.load(path)
    assert loaded == split
    raw = json.loads(path.read_text())
    assert raw["counts"] == {f: len(split.fold(f)) for f in FOLDS}


def test_overlapping_split_file_is_rejected(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": ["b"], "seed": 0,
                                "fractions": [0.8, 0.1, 0.1]}))
    with pytest.raises(DataError, match=r"split.json: image 'b' is in both 'train' and 'test'"):
        Split.load(path)


def test_broken_split_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text('{"train": []')
    with pytest.raises(DataError, match=r"split.json: not a valid split file"):
        Split.load(path)


@pytest.mark.parametrize(("ids", "labels", "kw", "message"), [
    (["a", "a"], [0, 1], {}, "not unique"),
    (["a", "b"], [0], {}, "2 ids but 1 labels"),
    (["a", "b"], [0, 1], {"fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
])
def test_bad_split_requests(ids, labels, kw, message):
    with pytest.raises(DataError, match=message):
        make_split(ids, np.array(labels), **kw)
