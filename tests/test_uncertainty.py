"""Honest uncertainty and evaluation on other data: abstention, risk-coverage, predictions.csv,
errors.png, class matching by name, leaving out the model's own training images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from galaxymorph.errors import DataError
from galaxymorph.evaluation.selective import accuracy_at_coverage, selective_metrics
from galaxymorph.models.calibration import abstention_rule, confidence_threshold, uncertain


def test_accuracy_at_coverage_keeps_the_most_confident_images():
    # Confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (right), 0.5 (wrong).
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
    y = np.array([0, 1, 1, 0, 1])
    assert accuracy_at_coverage(probs, y, 1.0) == pytest.approx(3 / 5)
    assert accuracy_at_coverage(probs, y, 0.8) == pytest.approx(3 / 4)
    assert accuracy_at_coverage(probs, y, 0.4) == pytest.approx(1 / 2)
    assert accuracy_at_coverage(probs, y, 0.2) == pytest.approx(1.0)
    sel = selective_metrics(probs, y, threshold=0.65)
    assert sel["accuracy_at_coverage"] == {"1.00": pytest.approx(0.6), "0.90": pytest.approx(0.6),
                                           "0.80": pytest.approx(0.75)}
    assert sel["threshold"] == {"confidence": 0.65, "coverage": pytest.approx(0.6),
                                "accuracy": pytest.approx(2 / 3), "uncertain": 2}


def test_threshold_answers_the_target_share_of_validation_images():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, 1000)
    for coverage in (0.9, 0.8, 0.5):
        t = confidence_threshold(probs, y, coverage)
        assert (~uncertain(probs, t)).mean() == pytest.approx(coverage, abs=0.002)
    assert confidence_threshold(probs, y, 1.0) == 0.0 and not uncertain(probs, 0.0).any()
    assert not uncertain(probs, None).any()
    rule = abstention_rule(probs, y, 0.8)
    assert rule["val_coverage"] == pytest.approx(0.8, abs=0.002) and rule["val_images"] == 1000
    with pytest.raises(ValueError, match="coverage"):
        confidence_threshold(probs, y, 0.0)


@pytest.fixture(scope="module")
def other_catalog(inference_catalog, tiny_model, tmp_path_factory):
    """Another catalog whose label numbers differ but names match the model's (as a catalog
    written for another survey would): the model's training and validation images, and its
    test images under new names (so they are images it has never seen, not its test fold)."""
    src = pd.read_csv(inference_catalog)
    folder = tmp_path_factory.mktemp("other")
    shutil.copytree(inference_catalog.parent / "images", folder / "images")
    test = {p.removeprefix("images/") for p in json.loads((tiny_model / "split.json").read_text())["test"]}
    for name in test:
        (folder / "images" / name).rename(folder / "images" / f"new_{name}")
    src["filename"] = [f"new_{f}" if f in test else f for f in src["filename"]]
    order = ["Merger", "Edge-on", "Spiral", "Elliptical"]
    src["label"] = [order.index(n) for n in src["label_name"]]
    path = folder / "other.csv"
    src.to_csv(path, index=False)
    return path, src


def test_evaluate_and_predict_write_one_output_contract(tiny_model, inference_catalog, tmp_path):
    """evaluate's predictions.csv and predict's output for the same labelled images: the same
    columns in the same order (predict adds ``error`` and the source's metadata, evaluate
    ``correct``), ``true_label`` an integer class index and ``true_label_name`` its name in
    both, and the same answers (docs/deployment.md, "Output columns")."""
    import galaxymorph

    spec = f"catalog:{inference_catalog}"
    galaxymorph.evaluate(model=tiny_model, data=spec, split="all", include_seen=True,
                         out=tmp_path / "ev", device="cpu")
    ev = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    pr = galaxymorph.predict(spec, model=tiny_model, progress=False, device="cpu")
    assert len(ev) == len(pr) > 0
    head = ["path", "label", "label_name", "probability", "uncertain",
            *(c for c in pr.columns if c.startswith("prob_"))]
    assert list(ev.columns) == [*head, "true_label", "true_label_name", "correct"]
    assert list(pr.columns[:len(head) + 3]) == [*head, "error", "true_label", "true_label_name"]
    for frame in (ev, pr):
        assert pd.api.types.is_integer_dtype(frame["true_label"])
        assert pd.api.types.is_integer_dtype(frame["label"])
        names = [c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_")]
        assert (frame["true_label_name"] == [names[i] for i in frame["true_label"]]).all()
    ev, pr = (f.assign(file=[str(p).rsplit("/", 1)[-1] for p in f["path"]]).set_index("file")
              for f in (ev, pr))
    pr = pr.loc[ev.index]
    for column in ("label", "label_name", "true_label", "true_label_name", "uncertain"):
        assert (ev[column] == pr[column]).all(), column
    np.testing.assert_allclose(ev["probability"], pr["probability"], atol=1e-4)


@pytest.fixture
def calibrated(tiny_model, tmp_path):
    """A copy of the tiny model whose card abstains below a given confidence."""

    def make(threshold: float):
        folder = tmp_path / f"model_{threshold}"
        shutil.copytree(tiny_model, folder)
        card = json.loads((folder / "model_card.json").read_text())
        card["abstention"] = {"threshold": threshold, "rule": "test"}
        (folder / "model_card.json").write_text(json.dumps(card))
        return folder

    return make


def test_evaluate_other_catalog_matches_classes_by_name_and_scores_all(tiny_model, other_catalog,
                                                                       tmp_path):
    """A catalog that is not the model's training data: every image, classes matched by name
    (the model's training label map is not re-applied), overlap with its own folds left out."""
    import galaxymorph

    path, frame = other_catalog
    out = tmp_path / "ev"
    metrics = galaxymorph.evaluate(model=tiny_model, data=f"catalog:{path}", out=out, device="cpu")
    split = json.loads((tiny_model / "split.json").read_text())
    # Same file names as the model's own catalog: the train/val ones are counted and left out.
    assert metrics["split"] == "all"
    assert metrics["excluded_seen"] == len(split["train"]) + len(split["val"])
    assert metrics["n"] == len(split["test"]) and "left out" in metrics["notes"][0]
    pred = pd.read_csv(out / "predictions.csv")
    assert len(pred) == metrics["n"]
    assert set(pred["path"]) == {p.replace("images/", "images/new_") for p in split["test"]}
    truth = dict(zip("images/" + frame["filename"], frame["label_name"], strict=True))
    assert all(truth[p] == t for p, t in zip(pred["path"], pred["true_label_name"], strict=True))
    assert (pred["correct"] == (pred["true_label"] == pred["label"])).all()
    # predict's columns for a labelled input, so the two files compare column for column
    classes = [c.removeprefix("prob_") for c in pred.columns if c.startswith("prob_")]
    assert list(pred.columns) == ["path", "label", "label_name", "probability", "uncertain",
                                  *(f"prob_{c}" for c in classes), "true_label",
                                  "true_label_name", "correct"]
    assert (pred["label_name"] == [classes[i] for i in pred["label"]]).all()
    probs = pred[[c for c in pred.columns if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(pred["probability"], probs.max(axis=1), atol=1e-5)
    assert metrics["accuracy"] == pytest.approx(pred["correct"].mean())
    for name in ("errors.png", "risk_coverage.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0
    assert set(metrics["selective"]["accuracy_at_coverage"]) == {"1.00", "0.90", "0.80"}
    report = (out / "report.md").read_text()
    assert "Abstention" in report and "left out" in report

    everything = galaxymorph.evaluate(model=tiny_model, data=f"catalog:{path}", out=tmp_path / "all",
                                      include_seen=True, device="cpu")
    assert everything["n"] == len(frame) and everything["excluded_seen"] == 0
    assert "optimistic" in everything["notes"][0]


def test_another_catalog_reusing_the_file_names_is_not_mistaken_for_training_data(
        inference_catalog, tiny_model, tmp_path, monkeypatch):
    """Another survey's catalog may name its own galaxies images/0001.png too: with the
    model's data here, a name counts as seen only for the same file (or identical content).
    The model's own data is opened once for both checks (test fold? seen images?)."""
    from PIL import Image

    import galaxymorph
    from galaxymorph.data import specs

    opened = []
    real_open = specs.open_source
    monkeypatch.setattr(specs, "open_source", lambda spec, *a, **k: opened.append(spec)
                        or real_open(spec, *a, **k))

    folder = tmp_path / "survey_b"
    shutil.copytree(inference_catalog.parent / "images", folder / "images")
    for f in (folder / "images").iterdir():  # same names, other pixels
        Image.open(f).convert("RGB").transpose(Image.Transpose.FLIP_TOP_BOTTOM).rotate(90).save(f)
    shutil.copy(inference_catalog, folder / "labels.csv")
    copied = next(iter(sorted((folder / "images").iterdir())))
    shutil.copy(inference_catalog.parent / "images" / copied.name, copied)  # one true copy
    frame = pd.read_csv(folder / "labels.csv")
    metrics = galaxymorph.evaluate(model=tiny_model, data=f"catalog:{folder / 'labels.csv'}",
                                   out=tmp_path / "ev", device="cpu")
    split = json.loads((tiny_model / "split.json").read_text())
    seen_copy = f"images/{copied.name}" in {*split["train"], *split["val"]}
    assert metrics["excluded_seen"] == int(seen_copy)
    assert metrics["n"] == len(frame) - int(seen_copy)
    assert opened.count(split["spec"]) == 1


def test_another_hdf5_file_in_the_same_folder_is_other_galaxies(tmp_path):
    """HDF5 ids are row numbers: row 3 of Galaxy10 SDSS is not row 3 of Galaxy10 DECaLS, even
    when both files sit in one folder, so a model of one scores the other whole."""
    import galaxymorph
    from galaxymorph.data.synthetic import write_synthetic_h5

    a = write_synthetic_h5(tmp_path / "survey_a.h5", 6, size=32, seed=0)
    b = write_synthetic_h5(tmp_path / "survey_b.h5", 3, size=32, seed=1)
    run = tmp_path / "run"
    galaxymorph.train(data=f"galaxy10-decals:{a}", model="cnn2", epochs=1, image_size=32, out=run,
                      progress=False, cache=False, threads=2)
    m = galaxymorph.evaluate(model=run, data=f"galaxy10-decals:{b}", out=tmp_path / "ev", device="cpu")
    assert m["split"] == "all" and m["excluded_seen"] == 0 and m["n"] == 12
    own = galaxymorph.evaluate(model=run, data=f"galaxy10-decals:{a}", out=tmp_path / "own", device="cpu")
    assert own["split"] == "test"


def test_evaluate_on_own_data_defaults_to_the_test_fold(tiny_model, tmp_path):
    import galaxymorph

    split = json.loads((tiny_model / "split.json").read_text())
    metrics = galaxymorph.evaluate(model=tiny_model, out=tmp_path / "ev", device="cpu")
    assert metrics["split"] == "test" and metrics["n"] == len(split["test"])
    assert not metrics["notes"]


def test_data_whose_classes_the_model_lacks_is_one_clear_error(tiny_model, other_catalog, tmp_path):
    import galaxymorph

    path, frame = other_catalog
    bad = frame.assign(label_name=frame["label_name"].replace("Merger", "Ring"))
    bad.to_csv(path.with_name("bad.csv"), index=False)
    with pytest.raises(DataError, match=r"Ring.*--label-map"):
        galaxymorph.evaluate(model=tiny_model, data=f"catalog:{path.with_name('bad.csv')}",
                             out=tmp_path / "e", label_map=None, device="cpu")


def test_predict_flags_uncertain_images_and_keeps_the_class(calibrated, inference_catalog):
    import galaxymorph

    images = sorted((inference_catalog.parent / "images").glob("*.png"))[:6]
    shy = galaxymorph.predict(images, model=calibrated(1.0), progress=False, workers=0)
    assert shy["uncertain"].all() and shy["label_name"].notna().all()
    sure = galaxymorph.predict(images, model=calibrated(0.0), progress=False, workers=0)
    assert not sure["uncertain"].any()
    assert list(shy["label"]) == list(sure["label"])


def test_calibrate_stores_the_threshold_in_a_copy(tiny_model, tmp_path):
    import galaxymorph.evaluation.calibrate as api
    from galaxymorph.models.loading import load_classifier

    before = (tiny_model / "model_card.json").read_bytes()
    rule = api.calibrate(tiny_model, coverage=0.5, out=tmp_path / "cal", device="cpu")
    clf = load_classifier(tmp_path / "cal")
    assert clf.abstain_threshold == pytest.approx(rule["threshold"]) and rule["target_coverage"] == 0.5
    assert rule["val_coverage"] >= 0.5
    assert (tiny_model / "model_card.json").read_bytes() == before  # the original is untouched
    # Training fits the rule itself (90% of its validation fold answered).
    assert load_classifier(tiny_model).card.abstention["target_coverage"] == 0.9


def test_bad_threshold_in_a_card_fails_on_load(calibrated):
    from galaxymorph.errors import ModelError
    from galaxymorph.models.loading import load_classifier

    with pytest.raises(ModelError, match="threshold"):
        load_classifier(calibrated(1.5))


def test_app_says_uncertain_instead_of_a_class(calibrated, inference_catalog, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from galaxymorph.app import core, launcher

    monkeypatch.setenv(core.ENV_MODEL, str(calibrated(1.0)))
    monkeypatch.delenv(core.ENV_EXAMPLES, raising=False)
    at = AppTest.from_file(str(launcher.app_script()), default_timeout=120).run()
    png = next((inference_catalog.parent / "images").glob("*.png")).read_bytes()
    at.file_uploader[0].set_value(("galaxy.png", png, "image/png")).run()
    assert not at.exception and not at.error
    said = [m.value for m in at.markdown if "Predicted class" in m.value]
    assert len(said) == 1 and said[0].startswith("Predicted class: **uncertain**")
    assert "below this model's 100% confidence threshold" in said[0]
    assert any("uncertain" in m.value for m in at.sidebar.markdown)


def test_default_model_on_another_catalog_just_works(shared_data, tmp_path):
    """The built-in model on GZ2 clean labels: no --split, no label map re-applied."""
    import galaxymorph

    metrics = galaxymorph.evaluate(model="default", data=f"catalog:{shared_data}/gz2_clean/dev.csv",
                                   out=tmp_path / "gz2", device="cpu")
    assert metrics["split"] == "all" and metrics["n"] == 235 and metrics["excluded_seen"] == 0
    assert len(pd.read_csv(tmp_path / "gz2" / "predictions.csv")) == 235
