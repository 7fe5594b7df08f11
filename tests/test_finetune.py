"""Fine-tuning: a parent model's backbone and preprocessing, its head kept or replaced by class
names, lineage on the card, resume, the CLI and Python API, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from tests.test_cli_train import run_cli

import galaxymorph
from galaxymorph.data.classes import match_class_names
from galaxymorph.errors import ConfigError, DataError, ModelError
from galaxymorph.models.artifact import ModelCard, read_card, save_artifact
from galaxymorph.models.network import build_network
from galaxymorph.models.parent import network_from_parent

FAST = dict(batch_size=32, lr=3e-3, progress=False, cache=False, threads=2)
CLASSES = ["Elliptical", "Spiral", "Edge-on", "Merger"]


def _parent(folder, classes, arch="resnet18", image_size=32, crop=0.8, **model_kwargs):
    torch.manual_seed(0)
    net = build_network(arch, len(classes), **model_kwargs)
    card = ModelCard(architecture=arch, class_names=list(classes), image_size=image_size, crop=crop,
                     name=folder.name, model_kwargs=model_kwargs, training_data={"spec": "catalog:parent.csv", "label_map": None})
    return save_artifact(folder, net, card)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from galaxymorph.data.synthetic import write_synthetic_catalog

    return str(write_synthetic_catalog(tmp_path_factory.mktemp("ftsyn"), 60, size=40, seed=2))


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return _parent(tmp_path_factory.mktemp("parents") / "parent", CLASSES)


@pytest.fixture(scope="module")
def small_parent(tmp_path_factory):
    """A cheap parent for the tests that check plumbing, not learning."""
    return _parent(tmp_path_factory.mktemp("parents") / "small", CLASSES, arch="cnn2", image_size=32)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, catalog, parent):
    out = tmp_path_factory.mktemp("ft") / "run"
    # The parent here is untrained, so its backbone must learn at the full rate.
    return galaxymorph.finetune(parent, data=f"catalog:{catalog}", out=out, epochs=6,
                                **FAST | {"batch_size": 16, "lr": 2e-3, "backbone_lr_mult": 1.0})


def test_class_names_match_in_any_order_and_spelling():
    assert match_class_names(["edge_on", "Spiral"], ["Spiral", "Edge-on"]) == [1, 0]
    assert match_class_names(["ring", "not ring"], CLASSES) is None
    assert match_class_names(["Spiral"], ["Spiral", "Merger"]) is None


def test_head_is_kept_for_the_same_classes_reordered_by_name(tmp_path, parent):
    reordered = ["merger", "Edge-on", "Spiral", "Elliptical"]
    net, plan = network_from_parent(parent, read_card(parent), reordered)
    ref, _ = network_from_parent(parent, read_card(parent), CLASSES)
    assert plan.kept and plan.order == [3, 2, 1, 0]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), ref.eval()(x)[:, [3, 2, 1, 0]], atol=1e-5)


def test_head_is_replaced_for_new_classes_and_the_backbone_kept(parent):
    net, plan = network_from_parent(parent, read_card(parent), ["ring", "not ring"])
    assert not plan.kept
    assert "new head for the 2 classes ['ring', 'not ring']" in plan.message("parent")
    assert "Elliptical" in plan.message("parent")
    assert net.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 2)
    parent_net, _ = network_from_parent(parent, read_card(parent), CLASSES)
    assert torch.equal(net.backbone.conv1.weight, parent_net.backbone.conv1.weight)


def test_short_finetune_beats_chance_with_the_parents_preprocessing(finetuned):
    assert finetuned.metrics["accuracy"] > 0.5  # 4 balanced classes: chance is 0.25
    card = read_card(finetuned.run_dir)
    assert (card.architecture, card.image_size, card.crop) == ("resnet18", 32, 0.8)
    cfg = galaxymorph.training.config.TrainConfig.load(finetuned.run_dir / "config.yaml")
    assert (cfg.model, cfg.image_size, cfg.crop, cfg.transfer) == ("resnet18", 32, 0.8, "full")
    assert finetuned.summary["head"] == "kept"


def test_lineage_is_on_the_card(finetuned, parent, catalog):
    card = read_card(finetuned.run_dir)
    assert card.lineage["parent"]["name"] == "parent"
    assert card.lineage["parent"]["source"] == str(parent)
    assert card.lineage["parent"]["training_data"]["spec"] == "catalog:parent.csv"
    assert card.lineage["finetune_data"]["spec"] == f"catalog:{catalog}"
    assert card.lineage["head"] == "kept" and card.description == "fine-tuned from parent"
    assert json.loads((finetuned.run_dir / "parent_model_card.json").read_text())["name"] == "parent"


def test_result_works_for_predict_evaluate_and_gradcam(finetuned, tmp_path, catalog):
    from galaxymorph.inference.gradcam import gradcam

    clf = galaxymorph.load_classifier(finetuned.run_dir)
    images = [np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)]
    assert clf.predict_proba(images).shape == (1, 4)
    assert gradcam(clf, images[0]).heatmap.shape[:2] == (32, 32)
    metrics = galaxymorph.evaluate(model=finetuned.run_dir, out=tmp_path / "ev")
    assert metrics["n"] == finetuned.metrics["n"]


def test_new_head_and_resume_from_the_saved_parent_card(tmp_path, catalog, small_parent):
    df = pd.read_csv(catalog)
    df["label_name"] = np.where(df["label"] == 0, "round", "other")
    df["label"] = (df["label"] != 0).astype(int)
    binary = tmp_path / "binary.csv"
    df.to_csv(binary, index=False)
    (tmp_path / "images").symlink_to(f"{catalog.rsplit('/', 1)[0]}/images")
    moved = tmp_path / "parent"
    shutil.copytree(small_parent, moved)
    out = tmp_path / "run"
    first = galaxymorph.finetune(moved, data=f"catalog:{binary}", out=out, epochs=1, **FAST)
    assert first.summary["head"] == "replaced" and read_card(out).class_names == ["round", "other"]
    shutil.rmtree(moved)  # resuming needs only the run folder
    resumed = galaxymorph.finetune(out=out, resume=True, epochs=2)
    assert resumed.summary["epochs"] == 2 and read_card(out).class_names == ["round", "other"]


def test_cli_finetune_and_its_bad_input(tmp_path, catalog, small_parent, capsys):
    code, text = run_cli(["finetune", "--from", str(small_parent), "--data", f"catalog:{catalog}",
                          "--out", str(tmp_path / "cli"), "--epochs", "1", "--transfer",
                          "linear-probe", "--threads", "2"], capsys)
    assert code == 0, text
    assert "kept head" in text and read_card(tmp_path / "cli").lineage["transfer"] == "linear-probe"
    code, text = run_cli(["finetune", "--from", str(tmp_path / "nowhere"), "--data",
                          f"catalog:{catalog}", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "no such model folder" in text and "Traceback" not in text
    assert not (tmp_path / "x").exists()


def test_bad_parents_and_one_class_data(tmp_path, catalog, parent):
    detector = tmp_path / "det"
    shutil.copytree(parent, detector)
    (detector / "detector.json").write_text("{}")
    with pytest.raises(ModelError, match="detector"):
        galaxymorph.finetune(detector, data=f"catalog:{catalog}", out=tmp_path / "a")
    broken = tmp_path / "broken"
    shutil.copytree(parent, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"weights file model\.safetensors is missing"):
        galaxymorph.finetune(broken, data=f"catalog:{catalog}", out=tmp_path / "b")
    df = pd.read_csv(catalog)
    one = tmp_path / "one.csv"
    df[df["label"] == 1].to_csv(one, index=False)
    (tmp_path / "images").symlink_to(f"{catalog.rsplit('/', 1)[0]}/images")
    with pytest.raises(DataError, match=r"only the class 'Spiral'"):
        galaxymorph.finetune(parent, data=f"catalog:{one}", out=tmp_path / "c")
    with pytest.raises(ConfigError, match=r"image_size .*parent"):
        galaxymorph.finetune(parent, data=f"catalog:{catalog}", out=tmp_path / "d", image_size=64)
    with pytest.raises(ConfigError, match="init_from model is resnet18"):
        galaxymorph.train(data=f"catalog:{catalog}", model="cnn3", init_from=str(parent),
                          out=tmp_path / "e", progress=False)
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_ensemble_parent_is_finetuned_as_a_whole(tmp_path, catalog):
    from galaxymorph.models.ensemble import GalaxyEnsemble

    nets = [build_network("cnn2", 4, image_size=32) for _ in range(2)]

    card = ModelCard(architecture="ensemble", class_names=CLASSES, image_size=32, crop=0.8, name="ens",
                     model_kwargs={"members": [{"architecture": "cnn2",
                                                "model_kwargs": {"image_size": 32}}] * 2})
    save_artifact(tmp_path / "ens", GalaxyEnsemble(nets), card)
    run = galaxymorph.finetune(tmp_path / "ens", data=f"catalog:{catalog}", out=tmp_path / "run",
                               epochs=1, **FAST)
    assert read_card(run.run_dir).architecture == "ensemble"
    batch = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    assert galaxymorph.load_classifier(run.run_dir).predict_proba(batch).shape == (1, 4)
