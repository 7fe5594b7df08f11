"""Pseudo-labels for self-training, .txt list inputs, and the source-balanced temperature."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galaxymorph.data.splits import Split
from galaxymorph.errors import ConfigError
from galaxymorph.models.calibration import fit_temperature, source_balance


def _list_file(catalog, tmp_path, extra_lines=()):
    names = pd.read_csv(catalog)["filename"].tolist()
    # Bare names resolve under the list's images/ folder, like a catalog's.
    lst = catalog.parent / "unlabelled.txt"
    lst.write_text("# unlabelled cutouts\n\n" + "\n".join([*names, *extra_lines]) + "\n")
    return lst, names


def test_txt_list_is_walked_as_its_paths(inference_catalog, tmp_path):
    from galaxymorph.inference.sources import InputPlan

    lst, names = _list_file(inference_catalog, tmp_path, ["missing.png"])
    keys = [it.key for it in InputPlan([str(lst)])]
    assert len(keys) == len(names) + 1  # comments and blank lines skipped, the missing kept
    assert keys[0].endswith(f"images/{names[0]}")
    assert keys[-1].endswith("missing.png")


def test_pseudo_label_keeps_confident_readable_images(tiny_model, inference_catalog, tmp_path):
    import galaxymorph
    from galaxymorph.inference.pseudo_labels import pseudo_label

    lst, names = _list_file(inference_catalog, tmp_path, ["missing.png"])
    frame = galaxymorph.predict([str(lst)], model=tiny_model, progress=False)
    readable = frame[frame["error"].fillna("") == ""]
    threshold = float(np.median(readable["probability"]))
    out = tmp_path / "pl" / "pseudo.csv"
    info = pseudo_label([str(lst)], out, model=tiny_model, min_confidence=threshold,
                        progress=False)
    cat = pd.read_csv(out)
    expected = readable[readable["probability"] >= threshold]
    assert len(cat) == len(expected) == info["kept"]
    assert 0 < len(cat) < len(names)
    assert set(cat["filename"]) == set(expected["path"])
    assert (cat["confidence"] >= threshold - 1e-6).all()
    assert info["unreadable"] == 1 and info["images_read"] == len(names)
    assert json.loads(out.with_suffix(".json").read_text())["kept"] == len(cat)
    # The catalog is a training source as it stands: labels are the model's class indices.
    src = galaxymorph.data.specs.open_source(f"catalog:{out}")
    assert len(src) == len(cat)
    clf = galaxymorph.load_classifier(tiny_model)
    assert all(clf.class_names[int(lab)] == name
               for lab, name in zip(cat["label"], cat["label_name"], strict=True))


def test_pseudo_label_caps_each_class(tiny_model, inference_catalog, tmp_path):
    from galaxymorph.inference.pseudo_labels import pseudo_label

    out = tmp_path / "capped.csv"
    info = pseudo_label([f"catalog:{inference_catalog}"], out, model=tiny_model,
                        min_confidence=1e-6, max_per_class=2, progress=False)
    cat = pd.read_csv(out)
    assert cat.groupby("label").size().max() <= 2
    assert info["kept"] == len(cat)


def test_pseudo_label_refuses_bad_options(tmp_path):
    from galaxymorph.inference.pseudo_labels import pseudo_label

    with pytest.raises(ConfigError, match="min_confidence"):
        pseudo_label(["x"], tmp_path / "p.csv", min_confidence=0)
    with pytest.raises(ConfigError, match=r"\.csv"):
        pseudo_label(["x"], tmp_path / "p.json")


def test_pseudo_label_cli(tiny_model, inference_catalog, tmp_path):
    from typer.testing import CliRunner

    from galaxymorph.cli.main import app

    out = tmp_path / "cli.csv"
    res = CliRunner().invoke(app, ["pseudo-label", f"catalog:{inference_catalog}", "--out", str(out),
                                   "--model", str(tiny_model), "--min-confidence", "0.000001",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == len(pd.read_csv(inference_catalog))


def test_source_balance_gives_each_source_equal_weight():
    origin = np.array([0] * 90 + [1] * 10)
    w = source_balance(origin)
    assert w is not None
    assert w[origin == 0].sum() == pytest.approx(w[origin == 1].sum())
    assert w.mean() == pytest.approx(1.0)
    assert source_balance(np.zeros(5)) is None


def test_weighted_temperature_follows_the_weighted_source():
    rng = np.random.default_rng(0)
    # Source 0: confident and right (wants T < 1); source 1: confident and often wrong (T > 1).
    y = rng.integers(0, 3, 400)
    logits = np.full((400, 3), 0.0)
    logits[np.arange(400), y] = 3.0
    wrong = np.arange(300, 400)[rng.random(100) < 0.5]
    logits[wrong] = 0.0
    logits[wrong, (y[wrong] + 1) % 3] = 3.0
    origin = np.array([0] * 300 + [1] * 100)
    plain = fit_temperature(logits, y)
    balanced = fit_temperature(logits, y, weights=source_balance(origin))
    assert balanced > plain  # the small, badly calibrated source now counts as much
    with pytest.raises(ValueError, match="one weight per label"):
        fit_temperature(logits, y, weights=np.ones(3))


def test_split_origin_of():
    split = Split(train=["a", "b"], val=["c"], test=["d"], seed=0, fractions=(0.5, 0.25, 0.25),
                  sources=[{"spec": "s0"}, {"spec": "s1"}], source_of={"a": 0, "b": 1, "c": 1, "d": 0})
    assert split.origin_of(["c", "a", "zz"]).tolist() == [1, 0, -1]
    plain = Split(train=["a"], val=["c"], test=["d"], seed=0, fractions=(0.5, 0.25, 0.25))
    assert plain.origin_of(["a", "c"]).tolist() == [0, 0]
