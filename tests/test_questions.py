"""Decision-tree models: vote targets, the masked loss, taxonomies, vote RMSE, old cards, and the
CLI / Python API end to end on small generated data."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from galaxymorph.data.questions import (
    GZ2,
    Targets,
    answer_probabilities,
    cumulative,
    find_vote_columns,
    label_targets,
    unpack,
    vote_targets,
)
from galaxymorph.data.taxonomies import GALAXY10, GZ1_4, GZ2_8, labels_in
from galaxymorph.errors import DataError, ModelError

Q = {q.name: i for i, q in enumerate(GZ2.questions)}


def answers(**given: dict[str, float]) -> np.ndarray:
    """One row of conditional answer probabilities: uniform, except the questions given."""
    row = np.zeros(GZ2.n_answers)
    for qi, q in enumerate(GZ2.questions):
        sl = GZ2.slices[qi]
        probs = given.get(q.name.replace("-", "_"))
        row[sl] = probs if probs is not None else 1.0 / len(q.answers)
    return row[None, :]


# -- targets ----------------------------------------------------------------------------------

def test_kaggle_votes_become_conditional_fractions_weighted_by_reach():
    table = {"Class1.1": [0.2], "Class1.2": [0.7], "Class1.3": [0.1],
             "Class2.1": [0.14], "Class2.2": [0.56],          # sums to Class1.2
             "Class6.1": [0.3], "Class6.2": [0.7],
             "Class7.1": [0.05], "Class7.2": [0.1], "Class7.3": [0.05],  # sums to Class1.1
             "Class8.6": [0.15], "Class8.1": [0.15]}            # two of seven: not used
    found = find_vote_columns(table)
    assert found.cumulative and found.convention == "kaggle"
    t = vote_targets(table, found, GZ2, 1)
    edge = t.fractions[0, GZ2.slices[Q["disk-edge-on"]]]
    assert edge == pytest.approx([0.2, 0.8])                  # 0.14 / 0.7
    assert t.weights[0, Q["disk-edge-on"]] == pytest.approx(0.7)
    assert t.fractions[0, GZ2.slices[Q["how-rounded"]]] == pytest.approx([0.25, 0.5, 0.25])
    assert t.weights[0, Q["how-rounded"]] == pytest.approx(0.2)
    assert t.weights[0, Q["something-odd"]] == pytest.approx(1.0)
    assert t.weights[0, Q["odd-feature"]] == 0 and t.weights[0, Q["bar"]] == 0


def test_gz2_conditional_votes_are_weighted_by_the_product_along_the_path():
    table = pd.DataFrame({"t01_smooth_or_features_a01_smooth_debiased": [0.1],
                          "t01_smooth_or_features_a02_features_or_disk_debiased": [0.8],
                          "t02_edgeon_a04_yes_debiased": [0.25],
                          "t04_spiral_a08_spiral_debiased": [0.9]})
    found = find_vote_columns(table.columns)
    assert not found.cumulative and found.convention == "gz2"
    t = vote_targets(table, found, GZ2, 1)
    # the one missing answer of a question is what is left of 1
    assert t.fractions[0, GZ2.slices[Q["smooth-or-featured"]]] == pytest.approx([0.1, 0.8, 0.1])
    assert t.fractions[0, GZ2.slices[Q["disk-edge-on"]]] == pytest.approx([0.25, 0.75])
    assert t.weights[0, Q["disk-edge-on"]] == pytest.approx(0.8)
    assert t.weights[0, Q["has-spiral-arms"]] == pytest.approx(0.8 * 0.75)


def test_vote_values_outside_zero_one_are_an_error_naming_the_column():
    with pytest.raises(DataError, match=r"Class1\.1"):
        vote_targets({"Class1.1": [1.7], "Class1.2": [0.0], "Class1.3": [0.0]},
                     find_vote_columns(["Class1.1", "Class1.2", "Class1.3"]), GZ2, 1, where="v.csv")


def test_hard_labels_count_as_the_answers_they_imply_and_nothing_more():
    names = ["Elliptical", "Barred_spiral", "Merger", "Edge-on"]
    t = label_targets(np.arange(4), names, GZ2)
    smooth = GZ2.answer_index("smooth-or-featured", "smooth")
    assert t.fractions[0, smooth] == 1 and t.weights[0].tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert t.fractions[1, GZ2.answer_index("bar", "yes")] == 1
    assert t.weights[1, Q["bar"]] == 1 and t.weights[1, Q["something-odd"]] == 0
    assert t.fractions[2, GZ2.answer_index("odd-feature", "merger")] == 1
    assert t.weights[2, Q["smooth-or-featured"]] == 0  # a merger says nothing of smoothness
    assert t.fractions[3, GZ2.answer_index("disk-edge-on", "yes")] == 1
    with pytest.raises(DataError, match="Blob"):
        label_targets(np.array([0]), ["Blob"], GZ2)


# -- the loss ---------------------------------------------------------------------------------

def test_a_question_nobody_answered_adds_nothing_to_its_head():
    from galaxymorph.models.tree import question_loss

    t = label_targets(np.array([0, 0]), ["Elliptical"], GZ2)   # answers smooth-or-featured only
    logits = torch.randn(2, GZ2.n_answers, requires_grad=True)
    question_loss(logits, torch.from_numpy(t.packed()), GZ2).backward()
    grad = logits.grad.abs()
    assert grad[:, GZ2.slices[Q["smooth-or-featured"]]].sum() > 0
    for name in ("disk-edge-on", "bar", "has-spiral-arms", "something-odd", "how-rounded", "odd-feature"):
        assert grad[:, GZ2.slices[Q[name]]].sum() == 0, name


def test_the_loss_is_the_reach_weighted_kl_divergence():
    from galaxymorph.models.tree import question_loss

    t = Targets.empty(1, GZ2)
    sl = GZ2.slices[Q["disk-edge-on"]]
    t.fractions[0, sl] = [0.2, 0.8]
    t.weights[0, Q["disk-edge-on"]] = 0.7
    logits = torch.zeros(1, GZ2.n_answers)
    logits[0, sl.start] = math.log(0.5 / 0.5)  # predicted 0.5 / 0.5
    expected = 0.7 * (0.2 * math.log(0.2 / 0.5) + 0.8 * math.log(0.8 / 0.5))
    assert float(question_loss(logits, torch.from_numpy(t.packed()), GZ2)) == pytest.approx(expected, rel=1e-5)


def test_question_temperatures_follow_the_vote_fractions_not_the_hard_labels():
    from galaxymorph.models.tree import fit_question_temperatures

    rng = np.random.default_rng(0)
    n = 400
    logits = np.zeros((n, GZ2.n_answers))
    sl = GZ2.slices[Q["smooth-or-featured"]]
    logits[:, sl.start] = rng.normal(0, 4, n)  # confident either way
    p = answer_probabilities(logits, GZ2)[:, sl]
    t = Targets.empty(n, GZ2)
    soft = np.arange(n) < n // 2
    # vote rows: the volunteers' fractions are the network's at temperature 2 (softer)
    t.fractions[soft, sl] = answer_probabilities(logits[soft] / 2, GZ2)[:, sl]
    t.fractions[~soft, sl] = np.eye(3)[p[~soft].argmax(axis=1)]  # hard labels agree, certain
    t.weights[:, Q["smooth-or-featured"]] = 1
    temps = fit_question_temperatures(logits, t.packed(), GZ2)
    assert temps[Q["smooth-or-featured"]] == pytest.approx(2.0, rel=0.05)
    assert temps[Q["bar"]] == 1.0  # nobody answers it: left alone


# -- taxonomies -------------------------------------------------------------------------------

def test_a_hand_made_vote_vector_maps_to_the_right_class_in_each_taxonomy():
    barred = answers(smooth_or_featured=[0.1, 0.85, 0.05], disk_edge_on=[0.1, 0.9], bar=[0.8, 0.2],
                     something_odd=[0.1, 0.9])
    cigar = answers(smooth_or_featured=[0.9, 0.08, 0.02], how_rounded=[0.1, 0.2, 0.7],
                    something_odd=[0.05, 0.95])
    merger = answers(smooth_or_featured=[0.6, 0.3, 0.1], something_odd=[0.9, 0.1],
                     odd_feature=[0.02, 0.02, 0.1, 0.06, 0.05, 0.7, 0.05])
    edge = answers(smooth_or_featured=[0.1, 0.9, 0.0], disk_edge_on=[0.95, 0.05],
                   something_odd=[0.1, 0.9])
    expect = {"gz1-4": ["Spiral", "Elliptical", "Merger", "Edge-on"],
              "gz2-8": ["Barred_spiral", "Cigar_elliptical", "Merger", "Edge-on"],
              "galaxy10": ["Barred Spiral", "Cigar Shaped Smooth", "Merging", "Edge-on"]}
    rows = np.concatenate([barred, cigar, merger, edge])
    for tax in (GZ1_4, GZ2_8, GALAXY10):
        p = tax.scores(rows, GZ2)
        assert np.allclose(p.sum(axis=1), 1)
        assert [tax.classes[k] for k in p.argmax(axis=1)] == expect[tax.name]


def test_galaxy10_says_which_classes_it_merges_and_data_classes_find_them():
    assert GALAXY10.index_of("Edge_on_with_Bulge") == GALAXY10.classes.index("Edge-on")
    assert GALAXY10.index_of("Unbarred Loose Spiral") == GALAXY10.classes.index("Unbarred Spiral")
    # another taxonomy's labels are translated through the answers they imply, when they decide
    names = ["Round_elliptical", "Barred_spiral", "Irregular", "Merger"]
    assert labels_in(GZ1_4, names, np.arange(4)).tolist() == [0, 1, -1, 3]
    assert labels_in(GALAXY10, names, np.arange(4)).tolist() == [2, 5, -1, 1]


def test_vote_rmse_equals_a_hand_computation():
    from galaxymorph.data.questions import in_table_weighting
    from galaxymorph.evaluation.metrics import vote_rmse

    probs = np.concatenate([answers(smooth_or_featured=[0.5, 0.5, 0.0], disk_edge_on=[0.2, 0.8]),
                            answers(smooth_or_featured=[0.9, 0.1, 0.0], disk_edge_on=[0.5, 0.5])])
    table = pd.DataFrame({"Class1.1": [0.6, 0.8], "Class2.1": [0.1, np.nan]})
    found = find_vote_columns(table.columns)
    predicted = in_table_weighting(probs, found, GZ2)
    # cumulative: Class2.1 = P(featured) * P(edge-on | featured) = 0.5 * 0.2 = 0.1 (row 0)
    assert predicted["Class2.1"][0] == pytest.approx(0.1)
    errors = [(0.5 - 0.6) ** 2, (0.1 - 0.1) ** 2, (0.9 - 0.8) ** 2]  # the blank cell is left out
    assert vote_rmse(predicted, table)["rmse"] == pytest.approx(math.sqrt(sum(errors) / 3))
    assert cumulative(probs, GZ2)[0, GZ2.answer_index("disk-edge-on", "yes")] == pytest.approx(0.1)


# -- cards ------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage, message", [
    (lambda c: c["questions"]["questions"][1].update(parent=["nowhere", "yes"]), "parent question"),
    (lambda c: c["taxonomies"]["gz1-4"].update(adapter={"weight": [[1, 2]], "bias": [0]}), "adapter"),
    (lambda c: c["taxonomies"]["gz2-8"]["conventions"].update(x={"weight": "eye"}), "conventions.x"),
    (lambda c: c["taxonomies"]["galaxy10"]["paths"]["Edge-on"].append(["bar", "maybe"]), "no answer"),
    (lambda c: c.update(class_names=["A", "B", "C", "D"]), "default taxonomy"),
    (lambda c: c.update(default_taxonomy="hubble"), "default_taxonomy"),
])
def test_a_damaged_tree_card_is_refused_by_name(tree_run, tmp_path, damage, message):
    from galaxymorph.models.loading import load_classifier

    folder = tmp_path / "bad"
    shutil.copytree(tree_run["run"], folder)
    card = json.loads((folder / "model_card.json").read_text())
    damage(card)
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message) as err:
        load_classifier(folder)
    assert "model_card.json" in str(err.value)


def test_old_four_class_cards_still_load(tiny_model, tmp_path):
    from galaxymorph.models.loading import load_classifier

    card = json.loads((tiny_model / "model_card.json").read_text())
    for key in ("questions", "taxonomies", "default_taxonomy"):
        card.pop(key, None)  # as cards were written before decision trees
    folder = tmp_path / "old"
    shutil.copytree(tiny_model, folder)
    (folder / "model_card.json").write_text(json.dumps(card))
    clf = load_classifier(folder)
    p, votes = clf.predict_outputs([np.full((40, 40, 3), 90, np.uint8)])
    assert not clf.is_tree and votes is None and p.shape == (1, len(card["class_names"]))
    with pytest.raises(ModelError, match="decision-tree"):
        clf.with_taxonomy("gz2-8")


# -- end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree_run(tmp_path_factory):
    """A tiny tree model trained on a labelled catalog, a vote table and an eight-class one."""
    import galaxymorph
    from galaxymorph.data.synthetic import SYNTHETIC_CLASSES, write_synthetic_catalog

    root = tmp_path_factory.mktemp("tree")
    labelled = write_synthetic_catalog(root / "labelled", 10, size=40, seed=0)
    votes_csv = write_synthetic_catalog(root / "votes", 10, size=40, seed=1)
    df = pd.read_csv(votes_csv)
    smooth = np.where(df["label_name"] == "Elliptical", 0.85, 0.1)
    edge = np.where(df["label_name"] == "Edge-on", 0.9, 0.1)
    odd = np.where(df["label_name"] == "Merger", 0.8, 0.1)
    votes = pd.DataFrame({"filename": df["filename"], "Class1.1": smooth, "Class1.2": 0.97 - smooth,
                          "Class1.3": 0.03, "Class2.1": (0.97 - smooth) * edge,
                          "Class2.2": (0.97 - smooth) * (1 - edge), "Class6.1": odd,
                          "Class6.2": 1 - odd})
    votes.to_csv(root / "votes" / "votes.csv", index=False)
    eight = write_synthetic_catalog(root / "eight", 8, size=40, seed=2)
    names = {"Elliptical": "Round_elliptical", "Spiral": "Barred_spiral", "Edge-on": "Edge-on",
             "Merger": "Merger"}
    e = pd.read_csv(eight)
    e["label_name"] = e["label_name"].map(names)
    e["label"] = [SYNTHETIC_CLASSES.index(k) for k in pd.read_csv(eight)["label_name"]]
    e.to_csv(eight, index=False)
    out = root / "run"
    result = galaxymorph.train(data=[f"catalog:{labelled}", f"catalog:{root}/votes/votes.csv",
                                     f"catalog:{eight}"], questions="gz2",
                               noisy_label_sources=[f"catalog:{labelled}"], model="cnn2",
                               image_size=32, epochs=1, out=out, progress=False, cache=False,
                               threads=2)
    return {"run": out, "result": result, "labelled": labelled,
            "votes": root / "votes" / "votes.csv", "eight": eight}


def test_training_writes_a_tree_card_with_taxonomies_and_per_source_scores(tree_run):
    from galaxymorph.models.loading import load_classifier

    card = json.loads((tree_run["run"] / "model_card.json").read_text())
    assert card["questions"]["name"] == "gz2" and card["default_taxonomy"] == "gz1-4"
    assert set(card["taxonomies"]) == {"gz1-4", "gz2-8", "galaxy10"}
    assert card["class_names"] == ["Elliptical", "Spiral", "Edge-on", "Merger"]
    labelled = f"catalog:{tree_run['labelled']}"
    assert labelled in card["taxonomies"]["gz1-4"]["conventions"]  # the noisy source's own
    learned = tree_run["result"].summary["answer_transitions"][labelled]["smooth-or-featured"]
    assert np.allclose(np.sum(learned, axis=1), 1, atol=1e-3) and learned[0][0] < 0.9  # it moved
    per_source = json.loads((tree_run["run"] / "metrics.json").read_text())["per_source"]
    assert per_source[f"catalog:{tree_run['votes']}"]["vote_rmse"]["rmse"] > 0
    assert per_source[f"catalog:{tree_run['eight']}"]["taxonomy"] == "gz2-8"
    clf = load_classifier(tree_run["run"])
    assert clf.is_tree and clf.with_taxonomy("gz2-8").class_names[4] == "Barred_spiral"
    assert clf.with_convention("labelled").convention_map is not None


def test_predict_writes_vote_fractions_and_the_class_of_the_taxonomy(tree_run, tmp_path):
    from typer.testing import CliRunner

    from galaxymorph.cli.main import app

    out = tmp_path / "p.csv"
    images = str(tree_run["labelled"].parent / "images")
    r = CliRunner().invoke(app, ["predict", images, "--model", str(tree_run["run"]), "--out",
                                 str(out), "--taxonomy", "gz2-8", "--no-progress"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    votes = [c for c in df.columns if c.startswith("vote_")]
    assert len(votes) == GZ2.n_answers
    for sl in GZ2.slices:  # each question's fractions sum to 1
        assert np.allclose(df[votes[sl]].sum(axis=1), 1, atol=1e-4)
    assert set(df["label_name"]) <= set(GZ2_8.classes)
    assert "prob_Barred_spiral" in df.columns
    r = CliRunner().invoke(app, ["predict", images, "--model", str(tree_run["run"]), "--out",
                                 str(tmp_path / "q.csv"), "--taxonomy", "hubble"])
    assert isinstance(r.exception, ModelError) and "no taxonomy 'hubble'" in str(r.exception)


def test_the_app_shows_the_trees_answers_and_explains_the_class(tree_run):
    from galaxymorph.app import core
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(tree_run["run"]).with_taxonomy("galaxy10")
    image = np.asarray(__import__("PIL.Image").Image.open(
        next((tree_run["labelled"].parent / "images").iterdir())).convert("RGB"))
    a = core.analyse(clf, image, "g.png")
    assert [q.question for q in a.tree] == [q.name for q in GZ2.questions]
    assert a.tree[0].reach == 1 and 0 <= a.tree[1].reach <= 1  # edge-on: reached via featured
    assert a.label_name in GALAXY10.classes and a.cam is not None and a.cam.target == a.label
    assert "questions" in core.card_summary(clf.card)


def test_evaluate_answers_in_the_datas_taxonomy_and_scores_vote_fractions(tree_run, tmp_path):
    import galaxymorph

    m = galaxymorph.evaluate(model=tree_run["run"], data=f"catalog:{tree_run['eight']}",
                             split="all", include_seen=True, out=tmp_path / "e8")
    assert m["taxonomy"] == "gz2-8" and m["class_names"][4] == "Barred_spiral"
    m = galaxymorph.evaluate(model=tree_run["run"], data=f"catalog:{tree_run['votes']}",
                             split="all", include_seen=True, out=tmp_path / "ev")
    assert m["vote_rmse"]["columns"] == ["Class1.1", "Class1.2", "Class1.3", "Class2.1",
                                         "Class2.2", "Class6.1", "Class6.2"]
    preds = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    assert "vote_disk-edge-on_yes" in preds.columns and len(preds) == m["n"]
    m = galaxymorph.evaluate(model=tree_run["run"], data=f"catalog:{tree_run['labelled']}",
                             split="all", include_seen=True, convention="labelled",
                             out=tmp_path / "conv")
    assert m["convention"] == "labelled" and m["taxonomy"] == "gz1-4"


def test_soft_pseudo_labels_are_a_vote_catalog_training_reads(tree_run, tiny_model, tmp_path):
    from galaxymorph.data.vote_dataset import open_question_dataset
    from galaxymorph.errors import ConfigError
    from galaxymorph.inference.pseudo_labels import pseudo_label

    images = tree_run["labelled"].parent / "images"
    info = pseudo_label([str(images)], tmp_path / "soft.csv", model=tree_run["run"],
                        min_confidence=1e-6, votes=True, progress=False)
    assert info["targets"] == "vote fractions" and info["kept"] == len(list(images.iterdir()))
    ds = open_question_dataset(f"catalog:{tmp_path / 'soft.csv'}", GZ2)
    t = unpack(ds.targets, GZ2)
    assert (t.weights[:, Q["smooth-or-featured"]] == 1).all()  # every question answered
    assert (t.weights[:, Q["odd-feature"]] > 0).all() and (t.weights[:, Q["odd-feature"]] < 1).all()
    with pytest.raises(ConfigError, match="decision-tree"):
        pseudo_label([str(images)], tmp_path / "x.csv", model=tiny_model, votes=True,
                     progress=False)


def test_calibrate_refits_every_taxonomy_on_the_validation_fold(tree_run, tmp_path):
    import galaxymorph
    from galaxymorph.models.loading import load_classifier

    galaxymorph.calibrate(model=tree_run["run"], out=tmp_path / "cal", coverage=0.5,
                          refit_temperature=True)
    before = json.loads((tree_run["run"] / "model_card.json").read_text())
    after = json.loads((tmp_path / "cal" / "model_card.json").read_text())
    assert set(after["taxonomies"]) == set(before["taxonomies"])
    assert after["taxonomies"]["gz1-4"]["fitted_on"]["images"] == \
        before["taxonomies"]["gz1-4"]["fitted_on"]["images"]  # the same validation images
    assert load_classifier(tmp_path / "cal").is_tree
    with pytest.raises(ModelError, match="decision-tree"):
        galaxymorph.ensemble([tree_run["run"], tmp_path / "cal"], out=tmp_path / "ens")


def test_a_tree_run_refuses_options_it_cannot_use(tmp_path):
    from galaxymorph.errors import ConfigError
    from galaxymorph.training.config import TrainConfig

    with pytest.raises(ConfigError, match="val_acc"):
        TrainConfig(data="x", questions="gz2", monitor="val_acc")
    with pytest.raises(ConfigError, match="unknown question schema"):
        TrainConfig(data="x", questions="gz9")
