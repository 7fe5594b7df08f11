"""Ensembles of finished runs: one model folder that every loader, Grad-CAM and ONNX accept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import galaxymorph
from galaxymorph.errors import ModelError

FAST = dict(model="cnn3", image_size=32, batch_size=32, lr=3e-3, progress=False, cache=False,
            threads=2, early_stopping_patience=0, epochs=2)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from galaxymorph.data.synthetic import write_synthetic_catalog

    root = tmp_path_factory.mktemp("ens")
    spec = f"catalog:{write_synthetic_catalog(root / 'data', 60, size=48, seed=3)}"
    runs = [galaxymorph.train(data=spec, out=root / f"m{seed}", seed=seed, **FAST).run_dir
            for seed in (0, 1)]
    return spec, runs, root


@pytest.fixture(scope="module")
def built(members):
    _, runs, root = members
    out = root / "ens"
    return galaxymorph.ensemble(runs, out), out


def test_ensemble_is_the_mean_of_member_logits(members, built):
    from galaxymorph.data import open_dataset
    from galaxymorph.models.calibration import softmax
    from galaxymorph.models.loading import load_classifier

    spec, runs, _ = members
    metrics, out = built
    for name in ("model.safetensors", "model_card.json", "split.json", "metrics.json", "report.md",
                 "confusion_matrix.png"):
        assert (out / name).exists(), name
    ens = load_classifier(out)
    assert ens.card.architecture == "ensemble" and len(ens.net.members) == 2
    ds = open_dataset(spec)
    batch = torch.stack([ens.prepare(ds.read(i)) for i in range(6)])
    mean_logits = np.mean([load_classifier(r).logits(batch, tta=False) for r in runs], axis=0)
    np.testing.assert_allclose(ens.predict_proba(batch, tta=False),
                               softmax(mean_logits, ens.temperature), atol=1e-5)
    # The test fold is the members' test fold, and the card records where it came from.
    split = json.loads((out / "split.json").read_text())
    assert metrics["n"] == len(split["test"]) and metrics["members"] == [str(r) for r in runs]
    card = json.loads((out / "model_card.json").read_text())
    assert [m["run"] for m in card["training"]["members"]] == [str(r) for r in runs]
    assert card["temperature"] > 0 and card["metrics"]["accuracy"] == metrics["accuracy"]


def test_ensemble_works_with_gradcam_features_and_predict(members, built, tmp_path):
    from galaxymorph.data import open_dataset
    from galaxymorph.inference.gradcam import gradcam
    from galaxymorph.models.introspect import feature_dim, features
    from galaxymorph.models.loading import load_classifier

    spec, runs, _ = members
    _, out = built
    ens = load_classifier(out)
    ds = open_dataset(spec)
    image = ds.read(0)
    cam = gradcam(ens, image)
    assert cam.heatmap.shape == (32, 32) and 0.0 <= cam.heatmap.min() <= cam.heatmap.max() <= 1.0
    with torch.no_grad():
        f = features(ens.net, torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 2 * feature_dim(load_classifier(runs[0]).net))
    summary = galaxymorph.predict([spec], model=out, out=tmp_path / "p.csv", progress=False)
    assert summary.n_images == len(ds) and summary.n_errors == 0


def test_members_must_share_split_and_preprocessing(members, tmp_path):
    spec, runs, root = members
    with pytest.raises(ModelError, match="at least two"):
        galaxymorph.ensemble(runs[:1], tmp_path / "one")
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    split = json.loads((other / "split.json").read_text())
    split["test"], split["val"] = split["val"], split["test"]
    (other / "split.json").write_text(json.dumps(split))
    with pytest.raises(ModelError, match="fold differs"):
        galaxymorph.ensemble([runs[0], other], tmp_path / "bad")
    wider = galaxymorph.train(data=spec, out=root / "wide", **(FAST | {"image_size": 40}))
    with pytest.raises(ModelError, match="image_size"):
        galaxymorph.ensemble([runs[0], wider.run_dir], tmp_path / "bad2")


def test_ensemble_exports_to_onnx(built, tmp_path):
    from galaxymorph.inference.export import TOLERANCE, export_onnx

    _, out = built
    result = export_onnx(out, tmp_path / "ens.onnx")
    assert result.path.exists() and result.max_abs_diff <= TOLERANCE


def test_members_may_differ_in_their_training_folds(members, tmp_path):
    """Members self-trained on different weak/pseudo-labelled images share only val and test;
    the ensemble's split keeps those and records the union of what they trained on."""
    _, runs, _ = members
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    split = json.loads((other / "split.json").read_text())
    dropped, split["train"] = split["train"][0], [*split["train"][1:], "extra/pseudo_0001.png"]
    if split.get("source_of") is not None:
        split["source_of"]["extra/pseudo_0001.png"] = 0
    (other / "split.json").write_text(json.dumps(split))
    out = tmp_path / "ens"
    galaxymorph.ensemble([runs[0], other], out)
    merged = json.loads((out / "split.json").read_text())
    first = json.loads((runs[0] / "split.json").read_text())
    assert merged["val"] == first["val"] and merged["test"] == first["test"]
    assert set(merged["train"]) == set(first["train"]) | {"extra/pseudo_0001.png"}
    assert dropped in merged["train"]  # still the first member's


def test_the_ensemble_lists_every_unlabelled_image_a_member_adapted_to(members, tmp_path):
    """Members trained with --unlabelled: the ensemble keeps the union of their lists, so that
    evaluate leaves those images out of the ensemble's scores too."""
    from galaxymorph.data.unlabelled import UNLABELLED_USED_FILE, read_used, record_used

    _, runs, _ = members
    copies = []
    for n, run in enumerate(runs):
        copy = tmp_path / f"m{n}"
        shutil.copytree(run, copy)
        record_used(copy, [str(tmp_path / f"u{n}.png"), str(tmp_path / "shared.png")])
        copies.append(copy)
    out = tmp_path / "ens"
    galaxymorph.ensemble(copies, out)
    assert sorted(r.path for r in read_used(out)) == sorted(
        str((tmp_path / name).resolve()) for name in ("u0.png", "u1.png", "shared.png"))
    galaxymorph.ensemble(runs, out)  # rebuilt from members without: no stale record left
    assert not (out / UNLABELLED_USED_FILE).exists()
    galaxymorph.ensemble(runs, tmp_path / "plain")
    assert not (tmp_path / "plain" / UNLABELLED_USED_FILE).exists()
