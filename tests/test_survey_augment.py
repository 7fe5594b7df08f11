"""Survey-difference augmentations and logit adjustment: validated, saved, and doing something."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import galaxymorph
from galaxymorph.data.synthetic import render_galaxy
from galaxymorph.data.transforms import SURVEY_AUGMENT, SurveyAugment, TrainAugment
from galaxymorph.errors import ConfigError
from galaxymorph.training.config import TrainConfig, resolve_config, survey_augment_overrides


def _galaxy() -> torch.Tensor:
    return torch.from_numpy(render_galaxy("Spiral", 64, 0)).permute(2, 0, 1).contiguous()


def test_survey_augment_validates():
    with pytest.raises(ConfigError, match="scale"):
        SurveyAugment(scale=(1.4, 0.7))
    with pytest.raises(ConfigError, match="jpeg"):
        SurveyAugment(jpeg=101)
    with pytest.raises(ConfigError, match="noise"):
        TrainConfig(survey_augment={"noise": -1})
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
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["survey_augment"]["scale"] == [0.7, 1.4]  # one mapping, SurveyAugment's fields
    assert not [k for k in saved if k.startswith("aug_")]
    back = TrainConfig.load(tmp_path / "config.yaml")
    assert back.survey_augment == SURVEY_AUGMENT and back == cfg


#: The flat keys of a config.yaml written before survey_augment was one mapping.
OLD_KEYS = {"aug_scale": [0.7, 1.4], "aug_blur": 1.0, "aug_noise": 0.03, "aug_colour": 0.3,
            "aug_stretch": 0.6, "aug_jpeg": 40, "aug_p": 0.5, "aug_grey": 0.2}


def test_an_old_config_yaml_loads_to_the_same_values(tmp_path):
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump({"data": "x", "epochs": 3, **OLD_KEYS}))
    cfg = TrainConfig.load(old)
    assert cfg.survey_augment == SurveyAugment(scale=(0.7, 1.4), blur=1.0, noise=0.03, colour=0.3,
                                               stretch=0.6, jpeg=40, p=0.5, grey=0.2)
    assert cfg.epochs == 3
    # Written again in the current shape, it reads back the same.
    cfg.save(tmp_path / "new.yaml")
    assert TrainConfig.load(tmp_path / "new.yaml") == cfg
    # Some of the old keys: the others keep their defaults.
    old.write_text(yaml.safe_dump({"data": "x", "aug_noise": 0.02}))
    assert TrainConfig.load(old).survey_augment == SurveyAugment(noise=0.02)


def test_an_old_model_cards_training_config_loads_to_the_same_values():
    card = json.loads((Path(galaxymorph.__file__).parent / "default_model" / "model_card.json")
                      .read_text())
    raw = card["training"]["config"]
    flat = {k: v for k, v in raw.items() if k.startswith("aug_")}
    assert "aug_noise" in flat and "survey_augment" not in raw  # written in the old, flat shape
    cfg = TrainConfig.from_dict(raw)
    for key, value in flat.items():
        got = getattr(cfg.survey_augment, key.removeprefix("aug_"))
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert (cfg.backbone_lr_mult, cfg.epochs, cfg.framing) == (
        raw["backbone_lr_mult"], raw["epochs"], raw["framing"])


def test_survey_augment_given_two_ways_or_wrongly_names_the_file(tmp_path):
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump({"aug_noise": 0.03, "survey_augment": {"noise": 0.05}}))
    with pytest.raises(ConfigError, match=r"both\.yaml.*aug_noise.*disagree"):
        TrainConfig.load(both)
    both.write_text(yaml.safe_dump({"aug_noise": 0.03, "survey_augment": {"noise": 0.03}}))
    assert TrainConfig.load(both).survey_augment == SurveyAugment(noise=0.03)
    bad = tmp_path / "bad.yaml"
    for value, message in (({"nois": 0.1}, "unknown survey_augment key"), ({"noise": -1}, "noise"),
                           ({"scale": [1]}, "scale"), (3, "mapping")):
        bad.write_text(yaml.safe_dump({"survey_augment": value}))
        with pytest.raises(ConfigError, match=message) as err:
            TrainConfig.load(bad)
        assert err.value.path == str(bad)


def test_the_survey_augment_flag_sets_the_built_in_strengths_over_a_file(tmp_path):
    """`--survey-augment` with a --config: the flag's strengths win, a file's greyscale views
    (not one of them) stay, field by field."""
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"data": "x", "survey_augment": {"colour": 0.3, "grey": 0.2}}))
    cfg = resolve_config(f, **survey_augment_overrides())
    assert cfg.survey_augment == replace(SURVEY_AUGMENT, grey=0.2)
    assert resolve_config(f).survey_augment == SurveyAugment(colour=0.3, grey=0.2)
    # An old file's flat keys merge the same way.
    f.write_text(yaml.safe_dump({"data": "x", "aug_colour": 0.3, "aug_grey": 0.2}))
    assert resolve_config(f, **survey_augment_overrides()).survey_augment == replace(SURVEY_AUGMENT,
                                                                                       grey=0.2)


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
