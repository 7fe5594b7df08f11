"""Training path: learns on synthetic galaxies, resumes, writes a complete run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import galaxymorph
from galaxymorph.errors import ConfigError
from galaxymorph.training.config import TrainConfig, resolve_config

FAST = dict(model="cnn3", image_size=32, batch_size=32, lr=3e-3, progress=False, cache=False,
            threads=2, early_stopping_patience=0)


@pytest.fixture(scope="module")
def synthetic_catalog(tmp_path_factory):
    from galaxymorph.data.synthetic import write_synthetic_catalog

    out = tmp_path_factory.mktemp("syn")
    return f"catalog:{write_synthetic_catalog(out, 100, size=48, seed=1)}"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synthetic_catalog):
    out = tmp_path_factory.mktemp("runs") / "resnet18"
    # A BatchNorm network learns the four rendered classes in a few epochs; the seed's
    # BatchNorm-free CNNs need far longer, which a unit test cannot afford.
    return galaxymorph.train(data=synthetic_catalog, epochs=5, out=out, **(FAST | {"model": "resnet18",
                                                                              "lr": 1e-3}))


def test_short_training_beats_chance(trained_run):
    # 4 balanced classes: chance is 0.25.
    assert trained_run.metrics["accuracy"] > 0.7
    assert trained_run.metrics["f1_macro"] > 0.6


def test_run_folder_is_complete(trained_run):
    run = trained_run.run_dir
    for name in ("config.yaml", "split.json", "metrics.json", "report.md", "confusion_matrix.png",
                 "curves.png", "summary.json", "model.safetensors", "model_card.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("n", "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                "recall_weighted", "f1_weighted", "ece", "per_class", "confusion_matrix"):
        assert key in metrics
    split = json.loads((run / "split.json").read_text())
    folds = [set(split[f]) for f in ("train", "val", "test")]
    assert not (folds[0] & folds[1] or folds[0] & folds[2] or folds[1] & folds[2])
    assert metrics["n"] == len(split["test"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 5 and summary["train_seconds"] > 0


def test_config_is_saved_and_reloadable(trained_run):
    cfg = TrainConfig.load(trained_run.run_dir / "config.yaml")
    assert cfg.model == "resnet18" and cfg.epochs == 5 and cfg.image_size == 32


def test_saved_model_reloads_with_same_predictions(trained_run, synthetic_catalog):
    from galaxymorph.data import open_dataset
    from galaxymorph.models.loading import load_classifier

    ds = open_dataset(synthetic_catalog)
    images = [ds.read(i) for i in range(8)]
    a = load_classifier(trained_run.run_dir).predict_proba(images)
    b = load_classifier(trained_run.run_dir / "checkpoints" / "best.ckpt").predict_proba(images)
    assert a.shape == (8, 4)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
    # The checkpoint path has no temperature; compare argmax, not probabilities.
    assert (a.argmax(1) == b.argmax(1)).all()


def test_resume_continues_without_repeating_epochs(tmp_path, synthetic_catalog):
    out = tmp_path / "run"
    galaxymorph.train(data=synthetic_catalog, epochs=2, out=out, **FAST)
    first = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["epoch"] == 1
    with pytest.raises(ConfigError, match="already holds a run"):
        galaxymorph.train(data=synthetic_catalog, epochs=2, out=out, **FAST)
    result = galaxymorph.train(out=out, resume=True, epochs=4)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 3
    # Epochs 0..3 each logged exactly once in the CSV across the two sessions.
    import pandas as pd

    logged = pd.read_csv(out / "logs" / "metrics.csv").dropna(subset=["val_loss"])["epoch"].tolist()
    assert logged == [0, 1, 2, 3]
    assert result.summary["epochs"] == 4


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path, synthetic_catalog):
    """A KeyboardInterrupt mid-training keeps last.ckpt; --resume finishes the remaining epochs."""
    import lightning as L

    out = tmp_path / "run"

    class StopAfterFirstEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    orig_init = L.Trainer.__init__

    def patched(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), StopAfterFirstEpoch()]
        orig_init(self, *args, **kwargs)

    L.Trainer.__init__ = patched
    try:
        with pytest.raises(KeyboardInterrupt):
            galaxymorph.train(data=synthetic_catalog, epochs=4, out=out, **FAST)
    finally:
        L.Trainer.__init__ = orig_init
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert not (out / "metrics.json").exists()
    done = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    galaxymorph.train(out=out, resume=True)
    assert json.loads((out / "summary.json").read_text())["epochs"] == 4
    assert done == 0  # epoch 1 was interrupted before its checkpoint: it is redone, 0 is not


def test_balanced_sampler_and_label_smoothing_run(tmp_path, synthetic_catalog):
    result = galaxymorph.train(data=synthetic_catalog, epochs=1, out=tmp_path / "r",
                            imbalance="both", label_smoothing=0.1, **FAST)
    assert result.metrics["n"] > 0


def test_config_precedence_and_validation(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: cnn2\nepochs: 3\n")
    cfg = resolve_config(f, epochs=5, data="x")
    assert cfg.model == "cnn2" and cfg.epochs == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: cnn2\n")
    with pytest.raises(ConfigError, match="modle"):
        resolve_config(bad)
    with pytest.raises(ConfigError, match="imbalance"):
        TrainConfig(data="x", imbalance="oversample")


def test_brief_training_on_real_gz1_images(shared_data, tmp_path):
    """One epoch on the real Galaxy Zoo 1 images, GZ1-4 classes: the whole path on real data."""
    result = galaxymorph.train(data=str(shared_data / "gz1"), label_map="gz1-4", model="cnn3",
                            image_size=32, crop=0.5, epochs=1, batch_size=64, progress=False,
                            cache=str(tmp_path / "cache"), threads=2, out=tmp_path / "gz1")
    m = result.metrics
    assert m["class_names"] == ["Elliptical", "Spiral", "Edge-on", "Merger"]
    assert m["n"] == 562  # 10% of the 5,617 GZ1-4 images
    # Better than always answering 'Elliptical' would be trivial to fake; the weighted loss
    # makes the model predict more than one class.
    assert sum(1 for c in m["per_class"].values() if c["recall"] > 0) >= 2


def test_last_checkpoint_written_every_epoch_even_without_improvement(tmp_path, synthetic_catalog):
    # lr~0: validation loss never improves after epoch 0, yet last.ckpt must follow each epoch.
    out = tmp_path / "flat"
    galaxymorph.train(data=synthetic_catalog, epochs=3, out=out, **(FAST | {"lr": 1e-12}))
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    assert torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 0


def test_monitor_chooses_the_kept_weights(tmp_path, synthetic_catalog):
    # lr~0 as above: by val_loss the kept model is epoch 0 and patience 1 stops the run early;
    # monitor="last" runs the whole schedule and keeps the final epoch's weights.
    stopped = galaxymorph.train(data=synthetic_catalog, epochs=4, out=tmp_path / "loss",
                             **(FAST | {"lr": 1e-12, "early_stopping_patience": 1}))
    assert stopped.summary["epochs"] < 4 and stopped.summary["best_checkpoint"] == "best.ckpt"
    last = galaxymorph.train(data=synthetic_catalog, epochs=4, out=tmp_path / "last", monitor="last",
                          **(FAST | {"lr": 1e-12, "early_stopping_patience": 1}))
    assert last.summary["epochs"] == 4 and last.summary["best_checkpoint"] == "last.ckpt"
    assert not (tmp_path / "last" / "checkpoints" / "best.ckpt").exists()
    with pytest.raises(ConfigError, match="monitor"):
        TrainConfig(data="x", monitor="val_auc")
