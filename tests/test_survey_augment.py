"""Survey-difference augmentations and logit adjustment: validated, saved, and doing something."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxymorph.data.synthetic import render_galaxy
from galaxymorph.data.transforms import SURVEY_AUGMENT, SurveyAugment, TrainAugment
from galaxymorph.errors import ConfigError
from galaxymorph.training.config import TrainConfig, survey_augment_overrides


def _galaxy() -> torch.Tensor:
    return torch.from_numpy(render_galaxy("Spiral", 64, 0)).permute(2, 0, 1).contiguous()


def test_survey_augment_validates():
    with pytest.raises(ConfigError, match="scale"):
        SurveyAugment(scale=(1.4, 0.7))
    with pytest.raises(ConfigError, match="jpeg"):
        SurveyAugment(jpeg=101)
    with pytest.raises(ConfigError, match="noise"):
        TrainConfig(aug_noise=-1)
    assert not SurveyAugment().active and SURVEY_AUGMENT.active


def test_each_effect_changes_the_image_and_keeps_its_format():
    x = _galaxy()
    for effect in (dict(scale=(0.7, 0.7001)), dict(blur=1.0), dict(noise=0.05), dict(colour=0.2),
                   dict(stretch=0.5), dict(jpeg=20)):
        aug = TrainAugment(4, zoom=0, shift=0, brightness=0, seed=1,
                           survey=SurveyAugment(p=1.0, **effect))
        aug.n_sym = 1  # identity symmetry: only the survey effect acts
        y, label = aug(x, 2)
        assert y.shape == x.shape and y.dtype == torch.uint8 and label == 2
        assert (y.float() - x.float()).abs().mean() > 0.2, effect


def test_shrinking_fills_the_border_with_sky_not_black():
    x = (_galaxy().int() + 60).clamp(0, 255).to(torch.uint8)  # a bright sky, far from black
    aug = TrainAugment(4, zoom=0, shift=0, brightness=0, seed=0,
                       survey=SurveyAugment(scale=(0.5, 0.5001), p=1.0))
    aug.n_sym = 1
    y, _ = aug(x, 0)
    sky = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1).float().median(dim=1).values
    assert (y[:, 0, 0].float() - sky).abs().max() <= 6
    # The galaxy is smaller: less light in a ring half-way out.
    assert y[:, 32, 8:16].float().mean() <= x[:, 32, 8:16].float().mean()


def test_augmentation_is_reproducible_from_its_seed():
    x = _galaxy()
    a = [TrainAugment(4, seed=5, survey=SURVEY_AUGMENT)(x, 0)[0] for _ in range(2)]
    assert torch.equal(a[0], a[1])


def test_survey_augment_values_are_saved_with_the_run(tmp_path):
    cfg = TrainConfig(data="x", **survey_augment_overrides())
    cfg.save(tmp_path / "config.yaml")
    back = TrainConfig.load(tmp_path / "config.yaml")
    assert back.survey_augment == SURVEY_AUGMENT


def test_logit_adjustment_is_tau_log_prior_and_moves_the_loss(tmp_path):
    from galaxymorph.models.network import build_network
    from galaxymorph.training.module import ClassifierModule

    adj = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    net = build_network("cnn2", 3, image_size=16)
    plain = ClassifierModule(net, 3)
    adjusted = ClassifierModule(net, 3, logit_adjustment=adj)
    logits, y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 2])
    # With equal logits the adjusted loss favours the frequent class: rare classes cost more.
    assert adjusted._loss(logits, y) > plain._loss(logits, y)
    assert "logit_adjustment" not in adjusted.state_dict()  # checkpoints stay compatible


def test_folds_logit_adjustment_follows_the_training_prior(tmp_path):
    from galaxymorph.data.synthetic import write_synthetic_catalog
    from galaxymorph.training.datamodule import GalaxyDataModule, open_training_data

    csv = write_synthetic_catalog(tmp_path / "c", {"Elliptical": 30, "Spiral": 10, "Edge-on": 10,
                                                   "Merger": 10}, size=16, seed=0)
    cfg = TrainConfig(data=f"catalog:{csv}", image_size=16, cache=False, progress=False)
    folds = GalaxyDataModule(cfg, open_training_data(cfg)).setup()
    counts = np.bincount(folds.train_labels, minlength=4)
    np.testing.assert_allclose(folds.logit_adjustment(0.5).numpy(),
                               0.5 * np.log(counts / counts.sum()), rtol=1e-5)
