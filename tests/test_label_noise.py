"""Sources whose labels follow another convention: a learned class-transition matrix each."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from galaxymorph.data.synthetic import write_synthetic_catalog
from galaxymorph.data.transforms import TrainAugment
from galaxymorph.errors import ConfigError
from galaxymorph.training.config import TrainConfig
from galaxymorph.training.datamodule import decode_noise_group, encode_noise_group


def test_labels_carry_their_group_through_augmentation():
    labels, groups = np.array([0, 1, 2, 3]), np.array([0, 1, 1, 2])
    enc = encode_noise_group(labels, groups, 4)
    y, g = decode_noise_group(torch.as_tensor(enc), 4)
    assert y.tolist() == [0, 1, 2, 3] and g.tolist() == [0, 1, 1, 2]
    # A mirror flip swaps chiral classes (1 <-> 2) and keeps the group.
    aug = TrainAugment(4, [(1, 2)], "swap", zoom=0, shift=0, brightness=0, seed=0)
    seen = {aug(torch.zeros(3, 8, 8, dtype=torch.uint8), 4 + 1)[1] for _ in range(40)}
    assert seen == {5, 6}


def test_noisy_loss_is_the_loss_of_the_observed_labels():
    from galaxymorph.models.network import build_network
    from galaxymorph.training.module import ClassifierModule

    m = ClassifierModule(build_network("cnn2", 3), 3, noise_groups=1)
    t0 = m.transitions()[0]
    assert torch.allclose(t0.sum(1), torch.ones(3)) and torch.allclose(t0.diagonal(), torch.full((3,), 0.9))
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    # Clean images: exactly the usual loss.
    assert torch.allclose(m._noisy_loss(logits, y, torch.zeros(6, dtype=torch.long)), m._loss(logits, y))
    # A source that swaps classes 0 and 1: with T that permutation, its loss is the loss of
    # the swapped labels, so the network is not taught the swap.
    with torch.no_grad():
        m.transition_logits[0] = torch.tensor([[0.0, 50, 0], [50, 0, 0], [0, 0, 50]])
    swapped = torch.tensor([1, 0, 2, 1, 0, 2])
    got = m._noisy_loss(logits, swapped, torch.ones(6, dtype=torch.long))
    assert got.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)


def test_noisy_sources_are_checked():
    with pytest.raises(ConfigError, match="none of the data sources"):
        TrainConfig(data=["a", "b"], noisy_label_sources=["c"])
    with pytest.raises(ConfigError, match="at least one source"):
        TrainConfig(data=["a", "b"], noisy_label_sources=["a", "b"])
    assert TrainConfig(data=["a", "b"], weak_data=["w"], noisy_label_sources=["b"]).noise_groups() == [0, 1, 0]


def _two_source_run(tmp_path, n: int, relabel, **train_options):
    """A run on a clean source ``a`` and a source ``b`` whose labels ``relabel`` rewrites (in
    place, on its catalog), ``b`` given a learned transition matrix: (result, b's spec, b's CSV)."""
    import galaxymorph

    classes = {"Elliptical": n, "Spiral": n}
    a = write_synthetic_catalog(tmp_path / "a", classes, size=32, seed=0)
    b = write_synthetic_catalog(tmp_path / "b", classes, size=32, seed=1)
    cat = pd.read_csv(b)
    relabel(cat)
    cat.to_csv(b, index=False)
    spec_b = f"catalog:{b}"
    res = galaxymorph.train(out=tmp_path / "run", data=[f"catalog:{a}", spec_b],
                            noisy_label_sources=[spec_b], image_size=32, batch_size=32, lr=3e-3,
                            progress=False, cache=False, threads=2, early_stopping_patience=0,
                            monitor="last", **train_options)
    return res, spec_b, b


def test_training_learns_a_sources_convention(tmp_path):
    """Source b calls every Elliptical 'Spiral': its learned matrix moves that way, the run
    records it, and the clean source's classes stay the network's."""
    def all_spiral(cat: pd.DataFrame) -> None:
        cat.loc[cat["label_name"] == "Elliptical", ["label", "label_name"]] = [
            int(cat.loc[cat["label_name"] == "Spiral", "label"].iloc[0]), "Spiral"]

    res, spec_b, _ = _two_source_run(tmp_path, 40, all_spiral, model="cnn3", epochs=15)
    summary = json.loads((res.run_dir / "summary.json").read_text())
    learned = summary["label_transitions"][spec_b]
    t = np.array(learned["matrix"])
    e, s = learned["classes"].index("Elliptical"), learned["classes"].index("Spiral")
    assert np.allclose(t.sum(1), 1, atol=1e-3)
    assert t[e, s] > 0.3  # from 0.1 at the start: b's Ellipticals read 'Spiral'
    assert t[s, s] > 0.8
    # The network itself still tells Ellipticals apart on the clean source's test images.
    clean = next(v for k, v in res.metrics["per_source"].items() if k != spec_b)
    assert clean["accuracy"] > 0.75


def test_cli_passes_noisy_labels_through(tmp_path, capsys):
    from galaxymorph.cli.main import main

    a = write_synthetic_catalog(tmp_path / "a", 4, size=24, seed=0)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", f"catalog:{a}", "--noisy-labels", "catalog:elsewhere.csv",
              "--out", str(tmp_path / "run")])
    out = capsys.readouterr()
    assert exc.value.code != 0
    assert "catalog:elsewhere.csv" in out.out + out.err and "none of the data sources" in out.out + out.err
    assert not (tmp_path / "run").exists()


SPEC = "catalog:../shared/data/gz1/labels.csv"


@pytest.fixture
def convention_model(tiny_model, tmp_path):
    """A copy of the tiny classifier whose card learned a GZ1 convention (matrix and map)."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    card = json.loads((folder / "model_card.json").read_text())
    k = len(card["class_names"])
    rng = np.random.default_rng(1)
    card["training"]["label_transitions"] = {SPEC: {
        "classes": card["class_names"], "matrix": (np.eye(k) * 0.7 + 0.3 / k).round(4).tolist(),
        "logit_map": {"weight": rng.normal(0, 1, (k, k)).tolist(), "bias": [0.1] * k}}}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def test_predict_answers_in_a_learned_labelling_convention(convention_model, tmp_path):
    """`predict --convention gz1`: a model's probabilities in the classes GZ1's raw majority
    would have given: through the map its card re-fitted on GZ1's validation fold, or, for a
    card without one, its learned transition matrix (p @ T)."""
    import dataclasses

    import galaxymorph
    from galaxymorph.errors import ModelError
    from galaxymorph.models.calibration import apply_convention_map
    from galaxymorph.models.loading import load_classifier

    folder, spec = convention_model, SPEC
    card = json.loads((folder / "model_card.json").read_text())
    matrix = card["training"]["label_transitions"][spec]["matrix"]
    csv = write_synthetic_catalog(tmp_path / "data", 3, size=48, seed=2)
    plain = galaxymorph.predict(f"catalog:{csv}", model=folder, progress=False, workers=0)
    gz1 = galaxymorph.predict(f"catalog:{csv}", model=folder, progress=False, workers=0,
                              convention="gz1")
    clf = load_classifier(folder)
    cols = [f"prob_{c}" for c in clf.class_names]
    fitted = card["training"]["label_transitions"][spec]["logit_map"]
    np.testing.assert_allclose(gz1[cols].to_numpy(float), apply_convention_map(
        plain[cols].to_numpy(float), np.asarray(fitted["weight"]), np.asarray(fitted["bias"])),
        atol=1e-5)
    # Without the map (a card from before calibrate --conventions): p @ T.
    training = json.loads(json.dumps(clf.card.training))
    del training["label_transitions"][spec]["logit_map"]
    old = dataclasses.replace(clf, card=dataclasses.replace(clf.card, training=training))
    t = np.asarray(matrix)
    t = t / t.sum(axis=1, keepdims=True)
    image = [(np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)]
    np.testing.assert_allclose(old.with_convention("gz1").predict_proba(image, tta=False),
                               clf.predict_proba(image, tta=False) @ t, atol=1e-6)
    assert not np.allclose(gz1[cols].to_numpy(float), plain[cols].to_numpy(float))
    np.testing.assert_allclose(gz1[cols].to_numpy(float).sum(axis=1), 1, atol=1e-6)
    with pytest.raises(ModelError, match=r"no labelling convention 'sdss'.*gz1"):
        clf.with_convention("sdss")
    bare = dataclasses.replace(clf, card=dataclasses.replace(clf.card, training={}))
    with pytest.raises(ModelError, match="not trained with --noisy-labels"):
        bare.with_convention("gz1")
    assert clf.with_convention(None) is clf


def test_the_built_in_model_answers_in_gz1s_convention():
    """The shipped tree model's GZ1 convention: an adapter fitted on GZ1's validation images."""
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier("default")
    image = [(np.random.default_rng(3).random((96, 96, 3)) * 255).astype(np.uint8)]
    own, gz1 = clf.predict_proba(image), clf.with_convention("gz1").predict_proba(image)
    assert np.abs(own - gz1).max() > 1e-3 and gz1.sum() == pytest.approx(1.0)


def test_a_convention_map_learns_a_relabelling_and_the_card_carries_it(convention_model):
    """fit_convention_map reads a source's convention off calibrated probabilities (here: it
    calls class 1 '2' and class 2 '1'); a card with the map answers through it in place of
    p @ T, and a malformed map is refused by name."""
    import dataclasses

    from galaxymorph.errors import ModelError
    from galaxymorph.models.calibration import apply_convention_map, fit_convention_map
    from galaxymorph.models.loading import load_classifier

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 400)
    probs = np.full((400, 4), 0.05)
    probs[np.arange(400), truth] = 0.85
    probs = probs * rng.uniform(0.8, 1.2, probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    said = np.array([0, 2, 1, 3])[truth]
    fitted = fit_convention_map(probs, said, 4)
    mapped = apply_convention_map(probs, np.asarray(fitted["weight"]), np.asarray(fitted["bias"]))
    assert (mapped.argmax(axis=1) == said).mean() > 0.95 and (probs.argmax(axis=1) == said).mean() < 0.6
    np.testing.assert_allclose(mapped.sum(axis=1), 1, atol=1e-9)
    assert fitted["n"] == 400
    with pytest.raises(ValueError, match=r"lack class\(es\) \[3\]"):
        fit_convention_map(probs[truth != 3], said[truth != 3], 4)

    clf = load_classifier(convention_model, engine="torch")
    spec = next(k for k in clf.conventions() if "gz1" in k)

    def with_map(entry_map):
        training = json.loads(json.dumps(clf.card.training))
        training["label_transitions"][spec]["logit_map"] = entry_map
        return dataclasses.replace(clf, card=dataclasses.replace(clf.card, training=training))

    k = len(clf.class_names)
    w, b = np.eye(k)[::-1] * 3.0, np.linspace(0, 1, k)  # any map: the answer must follow it
    conv = with_map({"weight": w.tolist(), "bias": b.tolist()}).with_convention("gz1")
    assert conv.convention_map is not None and conv.transition is None
    image = [(rng.random((48, 48, 3)) * 255).astype(np.uint8)]
    np.testing.assert_allclose(conv.predict_proba(image, tta=False),
                               apply_convention_map(clf.predict_proba(image, tta=False), w, b),
                               atol=1e-6)
    for bad in ({"weight": w[:2].tolist(), "bias": b.tolist()},
                {"weight": w.tolist(), "bias": [float("nan")] * k}, "a string",
                {"weight": [[1.0, 2.0], [3.0]], "bias": b.tolist()},  # ragged
                {"weight": "eye", "bias": b.tolist()}):
        with pytest.raises(ModelError, match="convention map"):
            with_map(bad).with_convention("gz1")


def test_calibrate_refits_conventions_on_the_sources_validation_images(tmp_path):
    """calibrate(conventions=True) fits a map per learned convention on that source's own
    validation images and writes it into the card (a copy here); a model without a learned
    convention, or a source whose validation images lack a class, is one clear error."""
    import galaxymorph
    from galaxymorph.errors import DataError, ModelError
    from galaxymorph.evaluation.calibrate import calibrate
    from galaxymorph.models.loading import load_classifier

    def swap(cat: pd.DataFrame) -> None:  # b's convention is the mirror image of a's
        cat["label"] = 1 - cat["label"]
        cat["label_name"] = cat["label"].map({0: "Elliptical", 1: "Spiral"})

    res, spec_b, b = _two_source_run(tmp_path, 30, swap, model="cnn2", epochs=3)
    a = tmp_path / "a" / "labels.csv"
    calibrate(res.run_dir, out=tmp_path / "cal", conventions=True, device="cpu")
    card = json.loads((tmp_path / "cal" / "model_card.json").read_text())
    fitted = card["training"]["label_transitions"][spec_b]["logit_map"]
    split = json.loads((res.run_dir / "split.json").read_text())
    assert fitted["n"] == sum(1 for i in split["val"] if split["source_of"][i] == 1) > 0
    conv = load_classifier(tmp_path / "cal").with_convention(spec_b)
    assert conv.convention_map is not None
    assert "logit_map" not in json.loads((res.run_dir / "model_card.json").read_text())[
        "training"]["label_transitions"][spec_b]  # in place only when no --out

    plain = galaxymorph.train(out=tmp_path / "plain", data=f"catalog:{a}", model="cnn2",
                              image_size=32, epochs=1, progress=False, cache=False, threads=2)
    with pytest.raises(ModelError, match="no labelling convention"):
        calibrate(plain.run_dir, out=tmp_path / "cal2", conventions=True, device="cpu")
    one = pd.read_csv(b)
    split_b = [i for i in split["val"] if split["source_of"][i] == 1]
    assert split_b
    one.loc[:, ["label", "label_name"]] = [0, "Elliptical"]  # b's val fold left with one class
    one.to_csv(b, index=False)
    with pytest.raises(DataError, match="lack class"):
        calibrate(res.run_dir, out=tmp_path / "cal3", conventions=True, device="cpu")


def test_a_two_class_convention_map_is_a_full_softmax():
    from galaxymorph.models.calibration import apply_convention_map, fit_convention_map

    rng = np.random.default_rng(1)
    p1 = rng.uniform(0.05, 0.95, 300)
    probs = np.c_[1 - p1, p1]
    said = (rng.random(300) > p1).astype(int)  # the convention reads the classes the other way
    fitted = fit_convention_map(probs, said, 2)
    w, b = np.asarray(fitted["weight"]), np.asarray(fitted["bias"])
    assert w.shape == (2, 2) and b.shape == (2,)
    mapped = apply_convention_map(probs, w, b)
    assert np.corrcoef(mapped[:, 1], p1)[0, 1] < -0.9
