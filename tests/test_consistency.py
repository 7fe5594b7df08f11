"""Consistency training (FixMatch) on unlabelled images: sources, views, loss and a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from galaxymorph.data.synthetic import write_synthetic_catalog
from galaxymorph.data.transforms import TrainAugment, dihedral
from galaxymorph.data.unlabelled import open_unlabelled
from galaxymorph.errors import ConfigError, DataError
from galaxymorph.training.config import TrainConfig
from galaxymorph.training.datamodule import GalaxyDataModule, UnlabelledViews, open_training_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A labelled catalog, and a .txt list of other images (with one missing file)."""
    root = tmp_path_factory.mktemp("consistency")
    labelled = write_synthetic_catalog(root / "lab", 8, size=40, seed=0)
    other = write_synthetic_catalog(root / "unl", 5, size=40, seed=1)
    names = [row.split(",")[0] for row in other.read_text().splitlines()[1:]]
    listing = root / "unl" / "list.txt"
    listing.write_text("# unlabelled cutouts\n" + "\n".join(names) + "\n\nmissing.png\n")
    return {"labelled": f"catalog:{labelled}", "list": str(listing), "n_list": len(names),
            "other": f"catalog:{other}", "other_names": names}


def _config(data, **kw) -> TrainConfig:
    base = dict(data=data["labelled"], model="cnn2", image_size=32, epochs=1, cache=False,
                progress=False, threads=2, unlabelled=[data["list"]])
    return TrainConfig(**(base | kw))


def test_a_list_opens_as_one_unlabelled_class_with_missing_files_kept_for_reporting(data):
    ds = open_unlabelled(data["list"])
    assert ds.class_names == ["unlabelled"]
    # Comments and blank lines skipped; the missing file is kept so the decoder reports it.
    assert len(ds) == data["n_list"] + 1
    assert ds.location(len(ds) - 1).endswith("missing.png")
    assert set(ds.labels.tolist()) == {0}


def test_a_missing_list_fails_before_any_run_folder(data, tmp_path):
    cfg = _config(data, unlabelled=[str(tmp_path / "nope.txt")])
    with pytest.raises(DataError, match=r"nope\.txt"):
        open_training_data(cfg)


@pytest.mark.parametrize("key,value", [("consistency_threshold", 0.0), ("consistency_threshold", 1.5),
                                       ("consistency_weight", -1.0), ("unlabelled_ratio", 0),
                                       ("unlabelled_ratio", 1.5)])
def test_bad_consistency_settings_are_refused(data, key, value):
    with pytest.raises(ConfigError, match=key):
        _config(data, **{key: value})


def test_unreadable_and_held_out_files_are_left_out(data):
    """The labelled catalog given again as unlabelled data: its validation and test files must
    not be adapted to, its training files may; the list's missing file is counted."""
    cfg = _config(data, unlabelled=[data["list"], data["labelled"]])
    dm = GalaxyDataModule(cfg, open_training_data(cfg))
    folds = dm.setup()
    counts = folds.unlabelled_counts
    assert counts[data["list"]] == {"used": data["n_list"], "unreadable": 1, "held_out_files": 0}
    n_held = folds.counts["val"] + folds.counts["test"]
    assert counts[data["labelled"]] == {"used": folds.counts["train"], "unreadable": 0,
                                        "held_out_files": n_held}
    # The positions used are exactly the training fold's images.
    _, pos = folds.unlabelled[1]
    assert sorted(pos.tolist()) == sorted(folds.positions["train"].tolist())


def test_the_strong_view_is_a_rotation_of_the_weak_one_when_nothing_else_varies():
    """A mirror flip belongs to the weak view only: the strong view, made from it, may rotate
    but never mirrors again, so a chiral class's pseudo-label stays right for both."""
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 255, size=(6, 3, 16, 16), dtype=np.uint8)
    weak = TrainAugment(1, zoom=0.0, shift=0.0, brightness=0.0, seed=1)
    strong = TrainAugment(1, chirality="no-flip", zoom=0.0, shift=0.0, brightness=0.0, seed=2)
    views = UnlabelledViews([(images, np.arange(6))], weak, strong)
    assert len(views) == 6
    rotations_seen = set()
    for j in range(6):
        w, s = views[j]
        assert w.shape == s.shape == (3, 16, 16) and w.dtype == s.dtype == torch.uint8
        matches = [k for k in range(4) if torch.equal(dihedral(w, k), s)]
        assert matches, "the strong view is not a rotation of the weak view"
        rotations_seen.update(matches)
    assert len(rotations_seen) > 1


def test_the_loss_counts_only_confident_answers():
    from galaxymorph.models.network import GalaxyNet  # noqa: F401 - the module's net type
    from galaxymorph.training.module import ClassifierModule

    class Fixed(torch.nn.Module):
        def forward(self, x):  # logits from the first pixel: image 0 confident, image 1 not
            v = x[:, 0, 0, 0]
            return torch.stack([v * 10, torch.zeros_like(v), torch.zeros_like(v)], dim=1)

    module = ClassifierModule(Fixed(), 3, channels_last=False, consistency_threshold=0.9)
    module.log = lambda *a, **k: None
    x_weak = torch.zeros(2, 3, 4, 4)
    x_weak[0, 0, 0, 0] = 1.0  # softmax(10, 0, 0): 0.9999 on class 0; image 1: 1/3 each
    strong_logits = torch.tensor([[0.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    loss = module._consistency_loss(x_weak, strong_logits)
    ce0 = torch.nn.functional.cross_entropy(strong_logits[:1], torch.tensor([0]))
    assert torch.isclose(loss, ce0 / 2)  # only image 0 counts, averaged over the batch of 2
    module.consistency_threshold = 1.0
    assert module._consistency_loss(x_weak, strong_logits).item() == 0.0


def test_a_run_with_unlabelled_images_logs_and_records_them(data, tmp_path):
    """End to end through the CLI: the run trains on both loaders, logs the share of
    unlabelled answers used, and its card names the unlabelled data; resume continues."""
    from typer.testing import CliRunner

    from galaxymorph.cli.main import app

    out = tmp_path / "run"
    args = ["train", "--data", data["labelled"], "--unlabelled", data["list"], "--model", "cnn2",
            "--image-size", "32", "--epochs", "1", "--threads", "2", "--consistency-threshold",
            "0.2", "--consistency-weight", "0.5", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = (out / "config.yaml").read_text()
    assert "consistency_threshold: 0.2" in config and "consistency_weight: 0.5" in config
    header = (out / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "unlabelled_used" in header and "unlabelled_loss" in header
    card = json.loads((out / "model_card.json").read_text())
    assert card["training_data"]["unlabelled"][data["list"]]["used"] == data["n_list"]
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    assert Path(out / "model.safetensors").exists()


def test_evaluate_leaves_out_the_images_a_model_adapted_to_without_labels(data, tmp_path):
    """The run saves the unlabelled files it used; scoring a catalog that holds some of them
    leaves those out (counted, with a note) unless include_seen."""
    from galaxymorph import evaluate, train
    from galaxymorph.data.unlabelled import UNLABELLED_USED_FILE, read_used

    listed = open_unlabelled(data["list"])
    used = [listed.location(i) for i in range(3)]
    listing = tmp_path / "some.txt"
    listing.write_text("".join(f"{p}\n" for p in used))
    run = tmp_path / "run"
    train(_config(data, unlabelled=[str(listing)]), out=run)
    saved = read_used(run)
    assert sorted(r.path for r in saved) == sorted(str(Path(p).resolve()) for p in used)
    assert all(r.size == Path(r.path).stat().st_size and len(r.sha256) == 64 for r in saved)
    card = json.loads((run / "model_card.json").read_text())
    assert card["training_data"]["unlabelled_files"] == UNLABELLED_USED_FILE

    n_other = len(data["other_names"])
    m = evaluate(model=run, data=data["other"], out=tmp_path / "ev")
    assert m["n"] == n_other - len(used) and m["excluded_seen"] == len(used)
    assert any("unlabelled training images" in note for note in m["notes"])
    m = evaluate(model=run, data=data["other"], out=tmp_path / "ev_all", include_seen=True)
    assert m["n"] == n_other and m["excluded_seen"] == 0


def test_finetune_takes_unlabelled_images_from_the_command_line(data, tmp_path):
    from typer.testing import CliRunner

    from galaxymorph import train
    from galaxymorph.cli.main import app
    from galaxymorph.data.unlabelled import UNLABELLED_USED_FILE, read_used

    parent = tmp_path / "parent"
    train(_config(data, unlabelled=[]), out=parent)
    out = tmp_path / "child"
    result = CliRunner().invoke(app, ["finetune", "--from", str(parent), "--data", data["labelled"],
                                      "--unlabelled", data["list"], "--consistency-threshold", "0.3",
                                      "--epochs", "1", "--threads", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "consistency_threshold: 0.3" in (out / "config.yaml").read_text()
    card = json.loads((out / "model_card.json").read_text())
    assert card["training_data"]["unlabelled"][data["list"]]["used"] == data["n_list"]
    assert len(read_used(out)) == data["n_list"]
    assert not (parent / UNLABELLED_USED_FILE).exists()


def test_unlabelled_views_do_not_move_the_normalisation_statistics():
    """Only labelled images set the BatchNorm running statistics the model is evaluated with:
    the strongly degraded views (and the weak ones) would shift them."""
    import copy

    from galaxymorph.training.module import ClassifierModule

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    reference = copy.deepcopy(net).train()
    module = ClassifierModule(net, 3, channels_last=False, consistency_threshold=0.0)
    module.log = lambda *a, **k: None
    module.train()
    x = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0])
    noisy = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    loss = module.training_step({"labelled": (x, y), "unlabelled": (noisy, noisy.flip(-1))}, 0)
    assert loss.requires_grad
    with torch.no_grad():
        reference(x.float() / 255)
    bn, ref = net[1], reference[1]
    assert torch.allclose(bn.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, ref.running_var, atol=1e-6)
    assert int(bn.num_batches_tracked) == 1


def test_evaluate_still_knows_the_unlabelled_images_after_the_data_moves(data, tmp_path):
    """The record keeps each file's size and SHA-256: with the data moved to another folder
    (another disk, another machine), evaluate still leaves out the images trained on."""
    import shutil

    from galaxymorph import evaluate, train

    catalog = Path(data["other"].removeprefix("catalog:"))
    before = tmp_path / "before"
    shutil.copytree(catalog.parent, before)
    listing = before / "some.txt"
    listing.write_text("".join(f"{n}\n" for n in data["other_names"][:2]))
    run = tmp_path / "run"
    train(_config(data, unlabelled=[str(listing)]), out=run)
    after = tmp_path / "after"
    before.rename(after)  # the recorded paths are gone; the same bytes are elsewhere
    m = evaluate(model=run, data=f"catalog:{after / catalog.name}", out=tmp_path / "ev")
    assert m["excluded_seen"] == 2 and m["n"] == len(data["other_names"]) - 2


def test_a_damaged_record_of_unlabelled_images_is_named(tmp_path):
    from galaxymorph.data.unlabelled import (
        LEGACY_USED_LIST,
        UNLABELLED_USED_FILE,
        read_used,
        record_used,
        used_among,
    )

    image = tmp_path / "a.png"
    image.write_bytes(b"pixels")
    record_used(tmp_path, [str(image)])
    assert used_among(tmp_path, [str(image), str(tmp_path / "other.png")]).tolist() == [True, False]
    row = f"{tmp_path / 'survey.h5'}#3"  # an HDF5 row: no file of its own, known by its name
    record_used(tmp_path, [row])
    assert used_among(tmp_path, [row, f"{tmp_path / 'survey.h5'}#4"]).tolist() == [True, False]
    record_used(tmp_path, [str(image)])
    record = tmp_path / UNLABELLED_USED_FILE
    good = json.loads(record.read_text())
    for entry in ({"path": 3}, {"path": "x", "size": -1}, {"path": "x", "sha256": "zz"}, "x"):
        record.write_text(json.dumps(good | {"files": [entry]}))
        with pytest.raises(DataError, match=UNLABELLED_USED_FILE):
            read_used(tmp_path)
    record.unlink()  # a run of the first release: a plain list of paths, matched by path
    (tmp_path / LEGACY_USED_LIST).write_text(f"# old\n{image}\n")
    assert [r.path for r in read_used(tmp_path)] == [str(image)]
    assert used_among(tmp_path, [str(image)]).tolist() == [True]
