"""Metrics match scikit-learn on a known confusion; calibration and comparison tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from galaxymorph.evaluation.compare import compare
from galaxymorph.evaluation.metrics import classification_metrics, expected_calibration_error
from galaxymorph.models.calibration import fit_temperature, softmax

NAMES = ["Elliptical", "Spiral", "Edge-on", "Merger"]


def _known_case():
    # True labels and predictions chosen by hand: confusion
    # [[5,1,0,0],[1,3,0,0],[0,0,2,1],[0,1,0,1]]
    y = np.array([0] * 6 + [1] * 4 + [2] * 3 + [3] * 2)
    pred = np.array([0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 2, 2, 3, 1, 3])
    probs = np.full((len(y), 4), 0.1)
    probs[np.arange(len(y)), pred] = 0.7
    return y, pred, probs


def test_metrics_match_sklearn_on_known_confusion():
    y, pred, probs = _known_case()
    m = classification_metrics(y, probs, NAMES)
    assert m["confusion_matrix"] == [[5, 1, 0, 0], [1, 3, 0, 0], [0, 0, 2, 1], [0, 1, 0, 1]]
    assert m["accuracy"] == pytest.approx(11 / 15)
    for avg in ("macro", "weighted"):
        assert m[f"precision_{avg}"] == pytest.approx(precision_score(y, pred, average=avg))
        assert m[f"recall_{avg}"] == pytest.approx(recall_score(y, pred, average=avg))
        assert m[f"f1_{avg}"] == pytest.approx(f1_score(y, pred, average=avg))
    # Hand-computed: Merger precision 1/2, recall 1/2.
    merger = {k: m["per_class"]["Merger"][k] for k in ("precision", "recall", "f1", "support")}
    assert merger == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["n"] == 15


def test_ranking_scores_are_hand_computed_and_ignore_the_operating_point():
    from galaxymorph.evaluation.metrics import ranking_scores

    # Merger scores of 4 images, two of them mergers, ranked merger, other, merger, other:
    # AP = (1/1 + 2/3) / 2; ROC AUC = 3 of the 4 merger/other pairs ordered right.
    y = np.array([3, 0, 3, 0])
    probs = np.zeros((4, 4))
    probs[:, 3] = [0.9, 0.8, 0.3, 0.1]
    probs[:, 0] = 1 - probs[:, 3]
    r = ranking_scores(y, probs, NAMES)
    assert r["Merger"]["average_precision"] == pytest.approx(5 / 6)
    assert r["Merger"]["roc_auc"] == pytest.approx(0.75)
    assert "Spiral" not in r  # no Spiral image: no score rather than a made-up one

    # A model that over-predicts a rare class (as strong class weights make it) has a poor F1
    # at argmax; damping that class's probability fixes F1 but leaves its ranking unchanged.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + 2.0 * np.eye(4)[y]
    logits[:, 3] += 2.5  # the operating point favours Merger
    shifted = logits.copy()
    shifted[:, 3] -= 2.5
    before, after = (classification_metrics(y, softmax(z), NAMES) for z in (logits, shifted))
    assert after["per_class"]["Merger"]["f1"] > before["per_class"]["Merger"]["f1"] + 0.1
    assert after["per_class"]["Merger"]["average_precision"] == pytest.approx(
        before["per_class"]["Merger"]["average_precision"])
    assert 0.0 < before["average_precision_macro"] <= 1.0


def test_bootstrap_scores_match_sklearn_and_intervals_shrink_with_n():
    from galaxymorph.evaluation.metrics import bootstrap_intervals, scores_from_confusion

    y, pred, probs = _known_case()
    rng = np.random.default_rng(5)
    for _ in range(5):  # any resample (a class may vanish): the vectorised scores are sklearn's
        idx = rng.integers(0, len(y), len(y))
        cm = np.zeros((4, 4), dtype=int)
        np.add.at(cm, (y[idx], pred[idx]), 1)
        s = scores_from_confusion(cm)
        assert s["accuracy"] == pytest.approx((y[idx] == pred[idx]).mean())
        assert s["f1_macro"] == pytest.approx(f1_score(y[idx], pred[idx], average="macro",
                                                       labels=[0, 1, 2, 3], zero_division=0))
        assert s["f1_weighted"] == pytest.approx(f1_score(y[idx], pred[idx], average="weighted",
                                                          labels=[0, 1, 2, 3], zero_division=0))
    m = classification_metrics(y, probs, NAMES)
    lo, hi = m["ci95"]["accuracy"]
    assert lo < m["accuracy"] < hi and m["ci95"]["per_class_f1"]["Merger"][0] == 0.0
    big = bootstrap_intervals(np.tile(y, 40), np.tile(pred, 40), NAMES)
    assert big["accuracy"][1] - big["accuracy"][0] < (hi - lo) / 3  # ~1/sqrt(40) as wide
    assert big["accuracy"][0] < 11 / 15 < big["accuracy"][1]


def test_ece_of_confident_wrong_model_is_large_and_of_calibrated_is_small():
    y = np.array([0, 1] * 50)
    wrong = np.tile([[0.95, 0.05]], (100, 1))  # always says class 0 with 95%: half wrong
    assert expected_calibration_error(wrong, y) == pytest.approx(0.45, abs=1e-9)
    calibrated = np.tile([[0.5, 0.5]], (100, 1))
    assert expected_calibration_error(calibrated, y) == pytest.approx(0.0, abs=1e-9)


def test_temperature_scaling_softens_overconfident_logits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), y] += 1.0
    t = fit_temperature(logits * 5.0, y)  # 5x overconfident
    assert 3.0 < t < 7.0
    before = expected_calibration_error(softmax(logits * 5.0), y)
    after = expected_calibration_error(softmax(logits * 5.0, t), y)
    assert after < before
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()  # accuracy unchanged


def _fake_run(folder, model, acc, seconds):
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(
        {"accuracy": acc, "precision_weighted": 0.5, "recall_weighted": 0.6, "f1_weighted": 0.55,
         "f1_macro": 0.4}))
    (folder / "summary.json").write_text(json.dumps(
        {"model": model, "train_seconds": seconds, "epochs": 7, "parameters": 2_500_000}))
    return folder


def test_compare_renders_table(tmp_path):
    a = _fake_run(tmp_path / "a", "cnn2", 0.41, 42.0)
    b = _fake_run(tmp_path / "b", "resnet50", 0.5, 1282.0)
    text = compare([a, b], tmp_path / "cmp.md")
    lines = text.strip().splitlines()
    assert lines[0].startswith("| run | model | accuracy")
    assert "| a | cnn2 | 0.410 |" in lines[2]
    assert "21.4 min" in lines[3] and "42 s" in lines[2] and "2.50 M" in lines[2]
    assert (tmp_path / "cmp.md").read_text() == text


def test_compare_names_unfinished_run(tmp_path):
    from galaxymorph.errors import GalaxymorphError

    (tmp_path / "empty").mkdir()
    with pytest.raises(GalaxymorphError, match=r"empty.*missing metrics\.json"):
        compare([tmp_path / "empty"])
