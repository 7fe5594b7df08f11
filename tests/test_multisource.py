"""Multi-source datasets: one class list, splits per source, weak sources in training only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from galaxymorph.data.dataset import open_dataset
from galaxymorph.data.splits import Split, split_by_source
from galaxymorph.data.synthetic import write_synthetic_catalog
from galaxymorph.errors import DataError


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two labelled catalogs with the same file names (in different folders), a catalog that
    only knows 'Spiral' (weak labels), and a GZ1-style catalog that needs a label map."""
    root = tmp_path_factory.mktemp("multi")
    a = write_synthetic_catalog(root / "a", {"Elliptical": 12, "Spiral": 8, "Edge-on": 6, "Merger": 5},
                                size=24, seed=0)
    b = write_synthetic_catalog(root / "b", 6, size=24, seed=1)
    weak = write_synthetic_catalog(root / "weak", {"Spiral": 10}, size=24, seed=2)
    raw = write_synthetic_catalog(root / "raw", 4, size=24, seed=3)
    # GZ1's raw classes: 0 Elliptical, 1/2 spirals, 3 edge-on, 4 don't know, 5 merger.
    lines = raw.read_text().splitlines()
    gz1 = {"Elliptical": "0,Elliptical", "Spiral": "1,Spiral_Clockwise", "Edge-on": "3,Edge_on",
           "Merger": "5,Merger"}
    out = [lines[0]] + [",".join([ln.split(",")[0], gz1[ln.split(",")[2]]]) for ln in lines[1:]]
    raw.write_text("\n".join(out) + "\n")
    return {k: f"catalog:{v}" for k, v in {"a": a, "b": b, "weak": weak, "raw": raw}.items()}


def test_sources_share_one_class_list_matched_by_name(sources):
    ds = open_dataset([sources["a"], sources["raw"]], "gz1-4", weak=[sources["weak"]])
    assert ds.class_names == ["Elliptical", "Spiral", "Edge-on", "Merger"]
    assert [p.weak for p in ds.parts] == [False, False, True]
    assert np.bincount(ds.origin).tolist() == [31, 16, 10]
    assert set(ds.labels[ds.origin == 2]) == {ds.class_names.index("Spiral")}
    # The raw catalog went through the label map (Spiral_Clockwise -> Spiral) ...
    raw_labels = ds.labels[ds.origin == 1]
    assert np.bincount(raw_labels, minlength=4).tolist() == [4, 4, 4, 4]
    # ... and images keep their own files: same names in two folders are two images.
    assert len(set(ds.ids)) == len(ds)
    first_b = open_dataset([sources["a"], sources["b"]]).ids
    assert any(k.startswith("a/") for k in first_b) and any(k.startswith("b/") for k in first_b)


def test_ids_do_not_depend_on_the_other_sources(sources, tmp_path):
    """Adding a weak source from elsewhere on disk keeps gz1/'s ids (and so split.json) as
    they were: a prefix is the shortest tail of a source's own folder that tells it apart."""
    far = write_synthetic_catalog(tmp_path / "deep" / "elsewhere" / "pseudo", {"Spiral": 3},
                                  size=24, seed=4)
    two = open_dataset([sources["a"], sources["b"]]).ids
    three = open_dataset([sources["a"], sources["b"]], weak=[f"catalog:{far}"]).ids
    assert three[:len(two)] == two
    assert all(k.startswith("pseudo/") for k in three[len(two):])


def test_ids_of_images_outside_the_catalogs_folder_do_not_name_the_machine(tmp_path):
    """A catalog naming images elsewhere (a pseudo-label list beside the code, images in the
    data folder) gets ids relative to its own folder: the same tree moved to another place,
    as on another machine, keeps every id, so its split.json still holds."""
    import shutil

    imgs = write_synthetic_catalog(tmp_path / "one" / "data" / "imgs", {"Spiral": 3}, size=24, seed=5)
    code = tmp_path / "one" / "code"
    code.mkdir()
    rows = imgs.read_text().splitlines()
    out = [rows[0]] + [f"../data/imgs/images/{r.split(',', 1)[0].split('/')[-1]},{r.split(',', 1)[1]}"
                       for r in rows[1:]]
    (code / "pseudo.csv").write_text("\n".join(out) + "\n")
    before = open_dataset(f"catalog:{code / 'pseudo.csv'}").ids
    assert all(k.startswith("../data/imgs/images/") for k in before)
    shutil.move(tmp_path / "one", tmp_path / "two")
    assert open_dataset(f"catalog:{tmp_path / 'two' / 'code' / 'pseudo.csv'}").ids == before


def test_one_file_in_two_sources_is_refused(sources):
    with pytest.raises(DataError, match="in both"):
        open_dataset([sources["a"], sources["a"]])


def test_a_source_spelling_the_classes_otherwise_is_matched_as_a_model_matches_them(sources):
    """One rule for class names (data.classes.match_classes): a source joins the dataset's
    classes, without a label map, exactly when a model of those classes would take it."""
    path = Path(sources["b"].removeprefix("catalog:")).with_name("spelt.csv")
    spelt = {"Elliptical": "elliptical", "Spiral": "SPIRAL", "Edge-on": "edge_on", "Merger": "Merger"}
    lines = Path(sources["b"].removeprefix("catalog:")).read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [ln.rsplit(",", 1)[0] + "," + spelt[ln.rsplit(",", 1)[1]]
                                            for ln in lines[1:]]) + "\n")
    alone = open_dataset(f"catalog:{path}")
    ds = open_dataset([sources["a"], f"catalog:{path}"])
    assert ds.class_names == ["Elliptical", "Spiral", "Edge-on", "Merger"]
    assert ds.labels[ds.origin == 1].tolist() == alone.with_classes(ds.class_names).labels.tolist()
    assert np.bincount(ds.labels[ds.origin == 1], minlength=4).tolist() == [6, 6, 6, 6]


def test_classes_that_do_not_match_need_a_label_map(sources):
    with pytest.raises(DataError, match="label-map"):
        open_dataset([sources["a"], sources["raw"]])


def test_split_per_source_no_image_in_two_folds_weak_only_in_training(sources, tmp_path):
    ds = open_dataset([sources["a"], sources["b"]], weak=[sources["weak"]])
    parts = [{"spec": p.spec, "weak": p.weak} for p in ds.parts]
    split = split_by_source(ds.ids, ds.labels, ds.origin, parts, seed=3)
    folds = {f: set(split.fold(f)) for f in ("train", "val", "test")}
    assert sum(map(len, folds.values())) == len(ds)
    assert not (folds["train"] & folds["val"] or folds["train"] & folds["test"]
                or folds["val"] & folds["test"])
    weak_ids = {k for k, o in zip(ds.ids, ds.origin, strict=True) if o == 2}
    assert weak_ids <= folds["train"]
    for n in (0, 1):  # every labelled source is in validation and test, split on its own
        own = {k for k, o in zip(ds.ids, ds.origin, strict=True) if o == n}
        assert own & folds["val"] and own & folds["test"]
    again = split_by_source(ds.ids, ds.labels, ds.origin, parts, seed=3)
    assert again.to_dict() == split.to_dict()  # deterministic
    loaded = Split.load(split.save(tmp_path / "split.json"))
    assert loaded.source_of == split.source_of and loaded.sources == split.sources
    saved = json.loads((tmp_path / "split.json").read_text())
    assert [s["counts"]["val"] for s in saved["sources"]][2] == 0


def test_training_on_several_sources_reports_each(sources, tmp_path):
    import galaxymorph

    out = tmp_path / "run"
    run = galaxymorph.train(data=[sources["a"], sources["b"]], weak_data=[sources["weak"]],
                            model="cnn2", epochs=1, image_size=24, out=out, progress=False,
                            cache=False, threads=2)
    split = json.loads((out / "split.json").read_text())
    assert [s["weak"] for s in split["sources"]] == [False, False, True]
    per_source = run.metrics["per_source"]
    assert set(per_source) == {sources["a"], sources["b"]}  # the weak source is never scored
    assert sum(m["n"] for m in per_source.values()) == run.metrics["n"]
    assert "Per source" in (out / "report.md").read_text()
    card = json.loads((out / "model_card.json").read_text())
    assert card["training_data"]["weak"] == [sources["weak"]]
    # Each source named as its data set, with its images (what the app's model card shows).
    recorded = card["training_data"]["sources"]
    assert [(s["name"], s["weak"]) for s in recorded] == [("a", False), ("b", False), ("weak", True)]
    assert [s["images"] for s in recorded] == [31, 24, 10]
    assert [s["counts"] for s in recorded] == [s["counts"] for s in split["sources"]]
    # One source alone, scored on its own test images of the model's multi-source split.
    a_test = [k for k in split["test"] if split["source_of"][k] == 0]
    alone = galaxymorph.evaluate(model=out, data=sources["a"], split="test", out=tmp_path / "ev")
    assert alone["n"] == len(a_test) > 0
    assert per_source[sources["a"]]["n"] == len(a_test)


def test_a_bad_second_source_fails_before_the_run_folder_exists(sources, tmp_path):
    import galaxymorph

    out = tmp_path / "never"
    with pytest.raises(DataError):
        galaxymorph.train(data=[sources["a"], "catalog:/nonexistent/labels.csv"], model="cnn2",
                          out=out, progress=False, cache=False)
    assert not out.exists()


def test_warm_start_needs_the_same_architecture_and_classes(sources, tmp_path):
    import galaxymorph
    from galaxymorph.errors import ConfigError

    first = galaxymorph.train(data=sources["b"], model="cnn2", epochs=1, image_size=24,
                              out=tmp_path / "first", progress=False, cache=False, threads=2)
    again = galaxymorph.train(data=sources["b"], model="cnn2", epochs=1, image_size=24, lr=1e-9,
                              init_from=str(first.run_dir), out=tmp_path / "again", progress=False,
                              cache=False, threads=2, scheduler="none")
    # lr ~ 0: the warm-started weights are the first run's, so its test logits are too.
    assert again.metrics["accuracy"] == first.metrics["accuracy"]
    with pytest.raises(ConfigError, match="init_from"):
        galaxymorph.train(data=sources["b"], model="cnn3", epochs=1, image_size=24,
                          init_from=str(first.run_dir), out=tmp_path / "bad", progress=False,
                          cache=False)
    assert not (tmp_path / "bad").exists()


def test_seen_images_of_a_multi_source_split_are_found_per_source_folder(sources):
    """Evaluating one source of a multi-source model: its training images are recognised under
    their source prefix, and another folder's same file names are not mistaken for them."""
    from galaxymorph.evaluation.seen import seen_in_training

    both = open_dataset([sources["a"], sources["b"]])
    a_ids = [k for k in both.ids if k.startswith("a/")]
    b_ids = [k for k in both.ids if k.startswith("b/")]
    saved = Split(train=a_ids[:10] + b_ids[:3], val=a_ids[10:12], test=a_ids[12:], seed=0,
                  fractions=(0.8, 0.1, 0.1))
    only_a = open_dataset(sources["a"])
    assert seen_in_training(only_a, saved).sum() == 12
    assert seen_in_training(only_a, saved)[[only_a.ids.index(k.split("/", 1)[1]) for k in a_ids[:12]]].all()
    only_b = open_dataset(sources["b"])
    # b's files have the same names as a's first images, but only b's own three are seen.
    assert seen_in_training(only_b, saved).sum() == 3


@pytest.mark.parametrize("mode, power", [("sqrt", 0.5), ("equal", 0.0)])
def test_source_sampling_draws_small_sources_more_often(sources, tmp_path, mode, power):
    from galaxymorph.training.config import TrainConfig
    from galaxymorph.training.datamodule import GalaxyDataModule, open_training_data

    cfg = TrainConfig(data=[sources["a"], sources["b"]], weak_data=[sources["weak"]], model="cnn2",
                      image_size=24, source_sampling=mode, cache=False)
    dm = GalaxyDataModule(cfg, open_training_data(cfg))
    folds = dm.setup()
    weights = dm.sampling_weights()
    origin = folds.origin("train")
    sizes = np.bincount(origin)
    share = np.array([weights[origin == k].sum() for k in range(len(sizes))])
    assert share / share.sum() == pytest.approx(sizes ** power / (sizes ** power).sum())
    # The loader draws with these weights; plain proportional training shuffles instead.
    assert dm.train_dataloader().sampler.weights.numel() == len(weights)
    plain_cfg = TrainConfig(data=[sources["a"], sources["b"]], model="cnn2", image_size=24,
                            cache=False)
    plain = GalaxyDataModule(plain_cfg, open_training_data(plain_cfg))
    assert plain.sampling_weights() is None


def test_source_sampling_is_checked():
    from galaxymorph.errors import ConfigError
    from galaxymorph.training.config import TrainConfig

    with pytest.raises(ConfigError, match="source_sampling"):
        TrainConfig(source_sampling="most")
