"""`train --synthetic`: generated images join the training fold only, matched by class name."""

from __future__ import annotations

import numpy as np
import pytest

from galaxymorph.data.synthetic import write_synthetic_catalog
from galaxymorph.errors import DataError
from galaxymorph.training.config import TrainConfig
from galaxymorph.training.datamodule import Folds, GalaxyDataModule, open_training_data


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    real = write_synthetic_catalog(root / "real", {"Elliptical": 40, "Spiral": 20, "Edge-on": 12,
                                                   "Merger": 6}, size=32, seed=0)
    fake = write_synthetic_catalog(root / "fake", {"Spiral": 30, "Merger": 30}, size=32, seed=99)
    return f"catalog:{real}", f"catalog:{fake}"


def _dm(real: str, fake: str, ratio: float) -> Folds:
    cfg = TrainConfig(data=real, synthetic=[fake], synthetic_ratio=ratio, image_size=32,
                      progress=False, cache=False, augment=False)
    dm = GalaxyDataModule(cfg, open_training_data(cfg))
    return dm.setup()


def _fold(real: str, fake: str, fold: str):
    cfg = TrainConfig(data=real, synthetic=[fake], synthetic_ratio=1.0, image_size=32,
                      progress=False, cache=False, augment=False)
    return GalaxyDataModule(cfg, open_training_data(cfg)).fold_dataset(fold)


def test_synthetic_images_only_in_training_fold(catalogs):
    real, fake = catalogs
    dm = _dm(real, fake, ratio=1.0)
    assert dm.synthetic, "no synthetic images were added"
    n_syn = dm.synthetic_count
    assert len(_fold(real, fake, "train")) == len(dm.positions["train"]) + n_syn
    # Validation and test hold the real fold positions and nothing else.
    for fold in ("val", "test"):
        assert len(_fold(real, fake, fold)) == len(dm.positions[fold])
        ids = {dm.dataset.ids[i] for i in dm.positions[fold]}
        assert ids == set(dm.split.fold(fold))


def test_ratio_caps_each_class_and_matches_names(catalogs):
    real, fake = catalogs
    dm = _dm(real, fake, ratio=1.0)
    counts = np.bincount(dm.train_labels, minlength=4)
    real_counts = np.bincount(dm.dataset.labels[dm.positions["train"]], minlength=4)
    names = dm.dataset.class_names
    # Only Spiral and Merger have generated images; they fill up to the largest real class.
    assert counts[names.index("Elliptical")] == real_counts[names.index("Elliptical")]
    assert counts[names.index("Edge-on")] == real_counts[names.index("Edge-on")]
    assert counts[names.index("Spiral")] <= real_counts.max()
    assert counts[names.index("Merger")] > real_counts[names.index("Merger")]
    half = _dm(real, fake, ratio=0.5)
    assert half.train_labels.size < dm.train_labels.size


def test_synthetic_with_unknown_class_names_is_refused(tmp_path, catalogs):
    real, _ = catalogs
    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.csv").write_text("filename,label,label_name\n")
    csv = write_synthetic_catalog(tmp_path / "x", 2, size=16, seed=0)
    text = csv.read_text().replace("Elliptical", "Blob").replace("Spiral", "Swirl")
    text = text.replace("Edge-on", "Stick").replace("Merger", "Pair")
    csv.write_text(text)
    with pytest.raises(DataError, match="none of its classes"):
        _dm(real, f"catalog:{csv}", ratio=1.0)
