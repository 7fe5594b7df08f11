"""Real-vs-synthetic detector: balanced grouped assembly, a short training that beats chance,
the metrics evaluate writes, and unreadable inputs reported rather than crashing."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from galaxymorph import progress
from galaxymorph.cli.main import main
from galaxymorph.data.splits import make_split
from galaxymorph.data.synthetic import make_synthetic_arrays, write_synthetic_catalog
from galaxymorph.detection import assemble, detector_metrics, evaluate_detector, predict_detector
from galaxymorph.detection.assembly import water_fill
from galaxymorph.detection.scoring import METRIC_KEYS, threshold_at_false_alarm
from galaxymorph.errors import ConfigError, DataError

FAST = dict(image_size=32, epochs=3, patience=0, batch_size=16, lr=1e-3, progress=False,
            threads=2, cache=False,
            auto_fakes=[],  # the toy's real images are renders
            augment=False)  # the toy generator's tell is blur, which augmentation teaches away


def _fake_folder(folder: Path, n_per_class: int, seed: int, size: int = 32) -> Path:
    """'Generated' toy images: renders with another signature (blurred, posterised), as a
    plain folder of PNGs, the way a user might hand over any generator's output."""
    images, _ = make_synthetic_arrays(n_per_class, size=size, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        soft = gaussian_filter(img.astype(np.float64), (1.5, 1.5, 0))
        Image.fromarray((np.round(soft / 48) * 48).clip(0, 255).astype(np.uint8)).save(
            folder / f"gen_{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("toy")
    return {
        "real": f"catalog:{write_synthetic_catalog(root / 'real', 30, size=32, seed=1)}",
        "fake": str(_fake_folder(root / "fake", 30, seed=2)),
        "real_eval": f"catalog:{write_synthetic_catalog(root / 'real_eval', 15, size=32, seed=3)}",
        "fake_eval": str(_fake_folder(root / "fake_eval", 15, seed=4)),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy):
    from galaxymorph.detection import train_detector

    out = tmp_path_factory.mktemp("det") / "run"
    return train_detector(toy["real"], toy["fake"], out, **FAST)


def test_water_fill_shares_evenly():
    assert water_fill([100, 100], 50) == [25, 25]
    assert water_fill([10, 100, 100], 90) == [10, 40, 40]
    assert sum(water_fill([3, 4], 100)) == 7


def test_assembly_balances_and_keeps_groups_apart(tmp_path, toy):
    # A third generated source at 16 px whose images come in near-duplicate pairs (group column).
    images, _ = make_synthetic_arrays(5, size=16, seed=7)
    (tmp_path / "pairs" / "images").mkdir(parents=True)
    rows = []
    for i, img in enumerate(images):
        for copy in range(2):
            name = f"images/p{i:03d}_{copy}.png"
            Image.fromarray(img if copy == 0 else img[:, ::-1]).save(tmp_path / "pairs" / name)
            rows.append((name, 0, "x", f"pair{i}"))
    pd.DataFrame(rows, columns=["filename", "label", "label_name", "group"]).to_csv(
        tmp_path / "pairs" / "labels.csv", index=False)

    csv = assemble([toy["real"]], [toy["fake"], f"catalog:{tmp_path / 'pairs' / 'labels.csv'}"],
                   tmp_path / "asm", image_size=32, progress=False)
    df = pd.read_csv(csv)
    counts = df["label_name"].value_counts()
    assert counts["real"] == counts["synthetic"] == 120  # larger side subsampled
    per_fake = df[df["label"] == 1].groupby("source").size()
    assert sorted(per_fake.tolist()) == [40, 80]  # even split; the small source used up
    # Same resampling for both sides: every file 32 px, through the 16 px bottleneck.
    info = json.loads((tmp_path / "asm" / "assembly.json").read_text())
    assert info["resampling"] == {"image_size": 32, "common_size": 16}
    sizes = {Image.open(csv.parent / f).size for f in df["filename"]}
    assert sizes == {(32, 32)}
    assert all(Image.open(csv.parent / f).format == "PNG" for f in df["filename"][:5])
    # Pairs share a group, and a grouped split never puts a group in two folds.
    pairs = df[df["group"].str.startswith("group:pair")]
    assert (pairs.groupby("group").size() == 2).all()
    split = make_split(df["filename"].tolist(), df["label"].to_numpy(), seed=0,
                       fractions=(0.6, 0.2, 0.2), groups=df["group"].tolist())
    fold_of = {k: f for f in ("train", "val", "test") for k in split.fold(f)}
    for _, members in df.groupby("group")["filename"]:
        assert len({fold_of[m] for m in members}) == 1


def test_gan_stages_share_groups(tmp_path):
    """Samples drawn with one seed from two stages of a GAN run share latent vectors: one group
    per image index; another run's samples are other groups."""
    from galaxymorph.detection.assembly import group_ids, open_images

    def sample_set(name: str, generator: str) -> list[str]:
        folder = tmp_path / name
        write_synthetic_catalog(folder, 1, size=16, seed=0)
        (folder / "sample_card.json").write_text(json.dumps({"generator": generator, "seed": 0}))
        return group_ids(open_images(str(folder)))

    early, late = sample_set("e10", "runs/gan"), sample_set("e20", "runs/gan")
    other = sample_set("other", "runs/gan2")
    assert early == late and len(set(early)) == 4
    assert not set(early) & set(other)


def test_short_training_beats_chance(trained, toy, tmp_path):
    run = trained.run_dir
    for name in ("curves.png", "batch_accuracy.png", "checkpoints/best.ckpt", "model.safetensors",
                 "detector.json", "detector_metrics.json", "split.json"):
        assert (run / name).exists(), name
    # The run's own split kept every group in one fold.
    df = pd.read_csv(run / "data" / "detector_catalog.csv")
    split = json.loads((run / "split.json").read_text())
    group_of = dict(zip(df["filename"], df["group"], strict=True))
    folds = [{group_of[k] for k in split[f]} for f in ("train", "val", "test")]
    assert not (folds[0] & folds[1] or folds[0] & folds[2] or folds[1] & folds[2])
    # Fresh images of both kinds, never seen: well above chance (0.5).
    m = evaluate_detector(run, toy["real_eval"], toy["fake_eval"], tmp_path / "eval", progress=False)
    assert m["n"] == 120 and m["excluded_training_images"] == 0
    assert m["accuracy"] > 0.75, m
    assert m["roc_auc"] > 0.85, m


def test_evaluate_writes_metric_keys_and_excludes_training_images(trained, toy, tmp_path):
    out = tmp_path / "eval"
    m = evaluate_detector(trained.run_dir, toy["real"], toy["fake"], out, progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    for key in (*METRIC_KEYS, "per_source", "held_out", "excluded_training_images"):
        assert key in saved, key
    assert np.asarray(saved["confusion_matrix"]).shape == (2, 2)
    assert np.asarray(saved["confusion_matrix"]).sum() == saved["n"]
    # Same sources as training: only the test fold's groups remain.
    test_ids = json.loads((trained.run_dir / "split.json").read_text())["test"]
    assert m["n"] == len(test_ids) and m["excluded_training_images"] > 0
    assert all(s["seen_in_training"] for s in m["per_source"].values())
    for name in ("predictions.csv", "confusion_matrix.png", "roc.png"):
        assert (out / name).exists(), name


def test_metrics_positive_class_is_synthetic():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.6, 0.9, 0.4])
    m = detector_metrics(y, p, p >= 0.5, ["r"] * 3 + ["f"] * 3)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(7 / 9)
    assert m["per_source"]["f"]["accuracy"] == pytest.approx(2 / 3)
    assert detector_metrics(np.zeros(3), np.full(3, 0.2), np.zeros(3))["roc_auc"] is None


def test_threshold_is_set_on_real_images_only(trained):
    rng = np.random.default_rng(0)
    p_real = rng.uniform(0, 0.4, 200)
    t = threshold_at_false_alarm(p_real, 0.05)
    # Flagging k of n real images flags a new one with probability (k + 1) / (n + 1): 9 of 200
    # gives 10/201 <= 5% (10 of them would give 5.5%), and it is the lowest such threshold.
    assert (p_real >= t).sum() == 9
    assert (p_real >= np.sort(p_real)[-10]).sum() == 10
    assert threshold_at_false_alarm(p_real, 0.0) > p_real.max()
    # The trained detector's threshold: on its one score over its real validation images, at
    # its target rate. The toy's few real validation images cannot promise 1%: the card says
    # what it will be.
    from galaxymorph.detection import load_detector
    from galaxymorph.detection.verdict import Verdict

    run = trained.run_dir
    info = json.loads((run / "detector.json").read_text())
    assert info["threshold_rule"]["on"] == "real images of the validation fold"
    df = pd.read_csv(run / "data" / "detector_catalog.csv")
    val = set(json.loads((run / "split.json").read_text())["val"])
    real_val = df[df["filename"].isin(val) & (df["label"] == 0)]
    det = load_detector(run)
    assert isinstance(det.rule, Verdict)
    files = [run / "data" / f for f in real_val["filename"]]
    parts = {k: np.concatenate([det.parts(b)[k] for _, b in det.prepared_batches(files)])
             for k in ("p_network", "p_statistics", "atypicality_distance")}
    n = len(real_val)
    assert info["threshold_rule"]["n_real"] == n
    assert info["threshold_rule"]["expected_false_alarm"] == pytest.approx(1 / (n + 1))
    assert info["threshold_rule"]["real_needed"] == 99
    assert det.rule.cut == pytest.approx(threshold_at_false_alarm(det.rule.logits(parts), 0.01))
    assert not det.rule.flagged(parts).any()  # n < 99: the cut is above every real image
    m = json.loads((run / "detector_metrics.json").read_text())
    assert m["threshold"] == pytest.approx(det.threshold)


def test_earlier_rules_flag_either_score_and_never_a_missing_atypicality():
    """Detectors calibrated before the one verdict decide as they did: p(synthetic) (the larger
    of the network's and the head's) or atypicality, each at its own threshold."""
    from galaxymorph.detection.verdict import ThresholdRule

    parts = {"p_network": np.array([0.9, 0.1, 0.1, 0.1]),
             "p_statistics": np.array([0.2, 0.1, np.nan, 0.6]),
             "atypicality": np.array([0.1, 0.999, np.nan, 0.5])}
    assert ThresholdRule(0.5).flagged(parts).tolist() == [True, False, False, True]
    either = ThresholdRule(0.5, 0.99)
    assert either.flagged(parts).tolist() == [True, True, False, True]
    assert either.explain(parts) == [["p_network"], ["atypicality"], [], ["p_statistics"]]
    y = np.array([1, 1, 0, 1])
    m = detector_metrics(y, either.score(parts), either.flagged(parts), ["f", "f", "r", "f"],
                         threshold=0.5, parts=parts,
                         flagged_by=[",".join(w) for w in either.explain(parts)])
    assert m["accuracy"] == 1.0 and m["false_alarm_rate"] == 0.0
    assert m["per_source"]["f"]["caught_by_atypicality_only"] == pytest.approx(1 / 3)
    assert m["per_source"]["f"]["flagged_by"]["p_statistics"] == pytest.approx(1 / 3)
    # Their score: p(synthetic)'s percentile among real calibration images, or the atypicality.
    ranked = ThresholdRule(0.5, 0.99, p_real=np.array([0.05, 0.1, 0.2, 0.3]))
    np.testing.assert_allclose(ranked.score(parts), [1.0, 0.999, 0.25, 1.0])


def test_the_trained_detector_flags_an_image_only_the_atypicality_catches(trained):
    """Parts that read "real" to the network and the head but an image far from every real
    one: the verdict calls it synthetic, flagged by the atypicality; at the real images'
    typical distance it stays real."""
    from galaxymorph.detection import load_detector

    det = load_detector(trained.run_dir)
    worst = float(det.by_statistics.calibration.max())
    for distance, verdict, why in ((20 * worst, "synthetic", "atypicality"),
                                   (float(np.median(det.by_statistics.calibration)), "real", "")):
        parts = {"p_network": np.array([1e-4]), "p_statistics": np.array([1e-4]),
                 "atypicality": np.array([1.0]), "atypicality_distance": np.array([distance])}
        decided = det.decide(parts)
        assert decided["verdict"].tolist() == [verdict] and decided["flagged_by"].tolist() == [why]


def test_detector_folders_from_before_the_verdict_still_load(trained, toy, tmp_path):
    """A folder calibrated before the one verdict (p(synthetic) or atypicality, each with its
    own threshold in detector.json; the oldest: p(synthetic) alone) loads, scores and decides
    by its own rule in predict and evaluate."""
    import shutil

    from galaxymorph.detection import load_detector
    from galaxymorph.detection.typicality import TYPICALITY_FILE, Typicality
    from galaxymorph.detection.verdict import ThresholdRule

    old = tmp_path / "old"
    shutil.copytree(trained.run_dir, old)
    info = json.loads((old / "detector.json").read_text())
    for key in ("verdict_model", "verdict_fit"):
        info.pop(key)
    info["settings"]["verdict"] = "either"
    info |= {"threshold": 0.6, "atypicality_threshold": 0.95,
             "threshold_rule": {"false_alarm_target": 0.01, "n_real": 12,
                                "verdict": "synthetic when p_synthetic >= threshold or "
                                           "atypicality >= atypicality_threshold"}}
    (old / "detector.json").write_text(json.dumps(info))
    typ = Typicality.load(old / TYPICALITY_FILE)
    typ.p_real = np.linspace(0.01, 0.5, 12)
    typ.save(old / TYPICALITY_FILE)
    det = load_detector(old)
    assert isinstance(det.rule, ThresholdRule) and det.threshold == 0.6
    files = sorted(Path(toy["fake_eval"]).glob("*.png"))[:6] + sorted(
        Path(toy["real_eval"][8:]).parent.rglob("*.png"))[:6]
    for r in predict_detector(old, files):
        p_syn = max(r["p_network"], r["p_statistics"])
        assert r["verdict"] == ("synthetic" if p_syn >= 0.6 or r["atypicality"] >= 0.95 else "real")
        assert r["synthetic_score"] == pytest.approx(max(np.searchsorted(typ.p_real, p_syn) / 12,
                                                         r["atypicality"]))
    m = evaluate_detector(old, toy["real_eval"], toy["fake_eval"], tmp_path / "ev", progress=False)
    assert m["threshold"] == 0.6 and m["n"] == 120
    # The oldest folders: no verdict setting, no atypicality threshold: p(synthetic) alone.
    for key in ("atypicality_threshold",):
        info.pop(key)
    info["settings"].pop("verdict")
    (old / "detector.json").write_text(json.dumps(info))
    det = load_detector(old)
    assert det.rule.atypicality_threshold is None
    r = predict_detector(old, files[:1])[0]
    assert r["synthetic_score"] == pytest.approx(max(r["p_network"], r["p_statistics"]))
    # Such a folder gets the one verdict without a new network.
    from galaxymorph.detection import recalibrate_detector
    from galaxymorph.detection.verdict import Verdict

    recalibrate_detector(old, verdict="combined")
    assert isinstance(load_detector(old).rule, Verdict)
    with pytest.raises(ConfigError, match="verdict"):
        recalibrate_detector(old, verdict="nope")
    # The same from the command line: a new rate, its threshold on real images again.
    before = load_detector(old).rule.threshold
    main(["detector", "calibrate", str(old), "--false-alarm", "0.2"])
    assert json.loads((old / "detector.json").read_text())["settings"]["false_alarm"] == 0.2
    assert load_detector(old).rule.threshold != before
    with pytest.raises(SystemExit) as info:
        main(["detector", "calibrate", str(old), "--verdict", "nope"])
    assert info.value.code == 2


def test_threshold_keeps_its_false_alarm_rate_on_new_real_images():
    """Set on n real images, the threshold flags at most the target share of *new* real ones
    (the old rule, flagging floor(rate * n) of them, gave 5.9% for 5% at n = 50)."""
    from galaxymorph.detection.scoring import expected_false_alarm, false_alarm_rank

    rng = np.random.default_rng(1)
    flagged = []
    for _ in range(4000):
        t = threshold_at_false_alarm(rng.uniform(size=50), 0.05)
        flagged.append((rng.uniform(size=20) >= t).mean())
    assert np.mean(flagged) <= 0.05
    assert np.mean(flagged) == pytest.approx(expected_false_alarm(50, 0.05), abs=0.005)
    assert false_alarm_rank(30, 0.01) == 0 and expected_false_alarm(30, 0.01) == pytest.approx(1 / 31)
    assert false_alarm_rank(199, 0.01) == 1


def test_ties_at_the_threshold_never_flag_more_than_the_rate_allows(trained):
    """Saturated probabilities tie at 1.0: flagging every one of them would break the rate, so
    the rule then flags nothing by p (a value no probability reaches, accepted on load)."""
    from galaxymorph.detection.detector import read_detector_info
    from galaxymorph.detection.scoring import NEVER_FLAGS, false_alarm_rank

    p = np.r_[np.linspace(0, 0.9, 190), np.full(10, 0.95)]  # k = 1 of 200 allowed; ties at 0.95
    t = threshold_at_false_alarm(p, 0.01)
    assert false_alarm_rank(200, 0.01) == 1 and (p >= t).sum() == 0 < t <= 1
    saturated = np.r_[np.linspace(0, 0.9, 190), np.ones(10)]
    t = threshold_at_false_alarm(saturated, 0.01)
    assert t == NEVER_FLAGS and not (saturated >= t).any()
    info = json.loads((trained.run_dir / "detector.json").read_text())
    (trained.run_dir / "detector.json").write_text(json.dumps(info | {"threshold": NEVER_FLAGS}))
    try:
        assert read_detector_info(trained.run_dir)["threshold"] == NEVER_FLAGS
        (trained.run_dir / "detector.json").write_text(json.dumps(info | {"threshold": 1.5}))
        with pytest.raises(DataError, match=r"detector\.json.*'threshold' must be a number"):
            read_detector_info(trained.run_dir)
    finally:
        (trained.run_dir / "detector.json").write_text(json.dumps(info))


def test_detector_probabilities_are_not_temperature_scaled(trained):
    """A nearly separable validation fold drives a fitted temperature to its lower bound and
    saturates p(synthetic) at 1.0 for real and generated images alike."""
    card = json.loads((trained.run_dir / "model_card.json").read_text())
    config = (trained.run_dir / "config.yaml").read_text()
    assert card["temperature"] == 1.0 and "calibrate: false" in config


def test_detector_train_warns_when_real_images_are_too_few(trained, capsys):
    from galaxymorph.cli.detector import _warn_few_real

    _warn_few_real(trained.run_dir)
    out = capsys.readouterr().out
    assert "warning" in out and "99 real images" in out


def test_several_fake_sources_balanced_and_kept_apart(tmp_path, toy):
    """The families added to one user generator: each its own source, equal shares, no group
    shared between sources; blur/JPEG/resampling reach both classes."""
    from galaxymorph.detection.augment import Degradation
    from galaxymorph.detection.generators import choose_families, family_specs

    # Added by default when the user gives one generator; their own mix when several.
    assert choose_families(["gan_e20"]) == ["renderer", "eigengalaxy"]
    assert choose_families(["a", "b"]) == [] and choose_families(["a"], []) == []
    assert choose_families(["a"], ["gan:runs/g"]) == ["gan:runs/g"]

    made = family_specs(["renderer", "eigengalaxy"], tmp_path / "gen", real_spec=toy["real"],
                        n=40, size=32, real_crop=1.0, seed=0)
    assert set(made) == {"renderer", "eigengalaxy"}
    fakes = [toy["fake"], *made.values()]
    csv = assemble([toy["real"]], fakes, tmp_path / "asm", image_size=32, max_per_side=90,
                   augment=Degradation(p_blur=1.0, p_jpeg=1.0), progress=False)
    df = pd.read_csv(csv)
    per_fake = df[df["label"] == 1].groupby("source").size()
    assert sorted(per_fake.index) == sorted(fakes) and (per_fake == 30).all()
    assert (df["label"] == 0).sum() == 90
    groups = df.groupby("source")["group"].apply(set)
    for a in groups.index:
        for b in groups.index:
            assert a == b or not groups[a] & groups[b]
    info = json.loads((tmp_path / "asm" / "assembly.json").read_text())
    assert info["augment"]["p_blur"] == 1.0
    # Degraded on both sides: stored images differ from the plain chain, deterministically.
    plain = assemble([toy["real"]], fakes, tmp_path / "plain", image_size=32, max_per_side=90,
                     progress=False)
    again = assemble([toy["real"]], fakes, tmp_path / "again", image_size=32, max_per_side=90,
                     augment=Degradation(p_blur=1.0, p_jpeg=1.0), progress=False)
    for side in (0, 1):
        name = df.loc[df["label"] == side, "filename"].iloc[0]
        aug = np.asarray(Image.open(csv.parent / name), dtype=np.int64)
        assert np.abs(aug - np.asarray(Image.open(plain.parent / name), dtype=np.int64)).mean() > 1
        assert (aug == np.asarray(Image.open(again.parent / name))).all()
        # The undegraded copy (what thresholds and typicality are calibrated on) is kept.
        clean = df.loc[df["filename"] == name, "clean"].iloc[0]
        assert (np.asarray(Image.open(csv.parent / clean))
                == np.asarray(Image.open(plain.parent / name))).all()


def test_compressed_fakes_are_jpeg_round_trips_of_the_synthetic_side_only(tmp_path, toy):
    """--compress-fakes: a share of the generated images is JPEG-compressed before resampling
    and stored as such (no undegraded copy: a JPEG fake is a fake as it arrives); real images
    are untouched, the draw is deterministic, and the assembly records it."""
    from galaxymorph.detection.augment import Compression

    kw = dict(image_size=32, max_per_side=40, progress=False)
    plain = assemble([toy["real"]], [toy["fake"]], tmp_path / "plain", **kw)
    csv = assemble([toy["real"]], [toy["fake"]], tmp_path / "jpeg",
                   compress_fakes=Compression(share=1.0, min_quality=30, max_quality=30), **kw)
    again = assemble([toy["real"]], [toy["fake"]], tmp_path / "again",
                     compress_fakes=Compression(share=1.0, min_quality=30, max_quality=30), **kw)
    df = pd.read_csv(csv)
    assert (df["clean"] == df["filename"]).all()

    def pixels(c: Path, name: str) -> np.ndarray:
        return np.asarray(Image.open(c.parent / name), dtype=np.int64)

    for name, label in zip(df["filename"], df["label"], strict=True):
        diff = np.abs(pixels(csv, name) - pixels(plain, name)).mean()
        assert (diff > 0.5) if label == 1 else (diff == 0), (name, label, diff)
        assert (pixels(csv, name) == pixels(again, name)).all()
    info = json.loads((tmp_path / "jpeg" / "assembly.json").read_text())
    assert info["compress_fakes"] == {"share": 1.0, "min_quality": 30, "max_quality": 30}
    assert json.loads((tmp_path / "plain" / "assembly.json").read_text())["compress_fakes"] is None
    # A share draws per image: about half compressed at 0.5, none at 0.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    half = Compression(share=0.5)
    changed = sum(not np.array_equal(half(img, np.random.default_rng(i)), img) for i in range(200))
    assert 70 < changed < 130
    assert np.array_equal(Compression(share=0.0)(img, rng), img)
    for bad in (dict(share=1.5), dict(min_quality=0), dict(min_quality=90, max_quality=80)):
        with pytest.raises(ValueError):
            Compression(**bad)


def test_compress_fakes_share_is_checked_and_passed_from_the_cli(tmp_path, capsys, monkeypatch, toy):
    from galaxymorph.detection import train_detector

    with pytest.raises(ConfigError, match="compress_fakes"):
        train_detector(toy["real"], toy["fake"], tmp_path / "run", compress_fakes=2.0,
                       progress=False)
    assert not (tmp_path / "run").exists()
    seen = _train_option_seen(capsys, monkeypatch, tmp_path, "compress_fakes",
                              [[], ["--compress-fakes", "0.25"]])
    assert seen == [0.0, 0.25]


def _with_bad_real_images(folder: Path) -> tuple[str, set[str]]:
    """A real catalog of toy galaxies plus two images that are no galaxy cutouts: a nearly
    blank frame and a field of sky noise with nothing at the centre (an error page's kin)."""
    csv = write_synthetic_catalog(folder, 5, size=32, seed=9)
    rng = np.random.default_rng(0)
    blank = np.full((32, 32, 3), 100, dtype=np.uint8)
    blank[0, 0] = 101  # not constant (the reader refuses those), but std < 1
    sky = rng.normal(20, 4, (32, 32, 3)).clip(0, 255).astype(np.uint8)
    bad = {"images/bad_blank.png": blank, "images/bad_sky.png": sky}
    for name, img in bad.items():
        Image.fromarray(img).save(folder / name)
    df = pd.read_csv(csv)
    df = pd.concat([df, pd.DataFrame({"filename": list(bad), "label": 0,
                                      "label_name": df["label_name"].iloc[0]})])
    df.to_csv(csv, index=False)
    return f"catalog:{csv}", {str(folder / name) for name in bad}


class _CountingBar(progress.Bar):
    """A bar that keeps its total and counts its advances (and draws nothing)."""

    def __init__(self, total):
        super().__init__()
        self.total, self.advanced = total, 0

    def advance(self, n=1):
        self.advanced += n


def test_real_images_that_are_no_galaxies_are_screened_out(tmp_path, toy, trained, monkeypatch):
    """screen_real (the default of detector train): a blank frame or a field with nothing at
    the centre is left out of the real side, replaced by another image and listed; off, it is
    used. evaluate_detector screens as the detector was trained."""
    real, bad = _with_bad_real_images(tmp_path / "real")
    kw = dict(image_size=32, max_per_side=40, progress=False)
    csv = assemble([real], [toy["fake"]], tmp_path / "on", screen_real=True, **kw)
    origins = set(pd.read_csv(csv)["origin"])
    assert not origins & bad
    bars = []  # the progress bar counts the images written, not the screened ones it replaced

    @contextmanager
    def counting(description, total=None, **kw):
        bars.append(_CountingBar(total))
        yield bars[-1]

    monkeypatch.setattr(progress, "progress_bar", counting)
    counted = assemble([real], [toy["fake"]], tmp_path / "counted", screen_real=True,
                       balance=False, **kw)
    assert bars[0].advanced == len(pd.read_csv(counted)) <= bars[0].total
    info = json.loads((tmp_path / "on" / "assembly.json").read_text())
    assert info["screened_real"] == 2
    assert {e.split(": ")[-1] for e in info["screened_real_examples"]} == {"blank", "no central source"}
    assert all(any(Path(b).name in e for e in info["screened_real_examples"]) for b in bad)
    off = assemble([real], [toy["fake"]], tmp_path / "off", **kw)
    assert bad <= set(pd.read_csv(off)["origin"])
    assert json.loads((tmp_path / "off" / "assembly.json").read_text())["screened_real"] == 0

    assert trained.run_dir.joinpath("detector.json").exists()
    assert json.loads((trained.run_dir / "detector.json").read_text())["settings"]["screen_real"]
    m = evaluate_detector(trained.run_dir, real, toy["fake_eval"], tmp_path / "eval",
                          balance=False, progress=False)
    assert m["screened_real"] == 2 and any("2 real image(s) were left out" in n for n in m["notes"])
    assert not set(pd.read_csv(tmp_path / "eval" / "predictions.csv")["origin"]) & bad
    kept = evaluate_detector(trained.run_dir, real, toy["fake_eval"], tmp_path / "kept",
                             balance=False, screen_real=False, progress=False)
    assert kept["screened_real"] == 0 and not any("left out" in n for n in kept["notes"])
    assert bad <= set(pd.read_csv(tmp_path / "kept" / "predictions.csv")["origin"])


def test_cli_screens_real_images_unless_told_not_to(tmp_path, capsys, monkeypatch):
    seen = _train_option_seen(capsys, monkeypatch, tmp_path, "screen_real",
                              [[], ["--no-screen-real"]])
    assert seen == [True, False]


def _noise_folder(folder: Path, n: int) -> Path:
    """Images of a 'generator' no detector saw: coloured noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"n{i}.png")
    return folder


def test_typicality_ranks_generated_above_real(trained, toy, tmp_path):
    from galaxymorph.detection import load_detector

    assert (trained.run_dir / "typicality.npz").exists()
    det = load_detector(trained.run_dir)
    noise = _noise_folder(tmp_path / "noise", 20)
    real = [r for r in predict_detector(trained.run_dir, [Path(toy["real_eval"][8:]).parent])
            if r["error"] is None]
    odd = predict_detector(trained.run_dir, [noise])
    a_real = np.array([r["atypicality"] for r in real])
    a_odd = np.array([r["atypicality"] for r in odd])
    assert 0.2 < np.median(a_real) < 0.8  # a real galaxy is an ordinary one
    assert a_odd.min() >= np.quantile(a_real, 0.9)
    from sklearn.metrics import roc_auc_score

    m = evaluate_detector(trained.run_dir, toy["real_eval"], toy["fake_eval"], tmp_path / "ev",
                          progress=False)
    assert m["parts"]["atypicality"]["roc_auc"] > 0.6, m["parts"]
    # (the toy's 12 real calibration images make percentiles coarse: ties at 1.0 cost AUC)
    assert roc_auc_score([0] * len(a_real) + [1] * len(a_odd), [*a_real, *a_odd]) > 0.9
    assert det.typicality is not None and det.by_statistics is not None


def test_evaluate_reports_each_fake_source(trained, toy, tmp_path, capsys):
    noise = str(_noise_folder(tmp_path / "noise", 30))
    code, text = _cli(capsys, "detector", "evaluate", str(trained.run_dir), "--real",
                      toy["real_eval"], "--fake", toy["fake_eval"], "--fake", noise,
                      "--out", str(tmp_path / "ev"))
    assert code == 0, text
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("accuracy", "roc_auc", "average_precision", "false_alarm_rate", "threshold"):
        assert m[key] is not None, key
    rows = m["per_source"]
    assert set(rows) == {toy["real_eval"], toy["fake_eval"], noise}
    assert rows[toy["real_eval"]]["false_alarm_rate"] == pytest.approx(m["false_alarm_rate"])
    for fake in (toy["fake_eval"], noise):
        assert {"roc_auc", "average_precision", "recall", "accuracy"} <= set(rows[fake])
        assert rows[fake]["n"] == 30
    assert "Traceback" not in text and "left out" in text


def test_evaluate_notes_real_images_unlike_the_detectors_own(trained, toy, tmp_path, capsys):
    """Real images the detector flags far beyond its false-alarm target (here: noise images
    passed as the real side, as images of another survey would be) get a note naming the
    source; the notes rule itself needs a real source flagged >= 10% and >= 10x the target."""
    from galaxymorph.detection.evaluate import unlike_real_notes

    noise = str(_noise_folder(tmp_path / "noise", 30))
    # Noise stands for another survey's cutouts here: kept, though it has no central source.
    code, text = _cli(capsys, "detector", "evaluate", str(trained.run_dir), "--real", noise,
                      "--fake", toy["fake_eval"], "--out", str(tmp_path / "ev"),
                      "--no-screen-real")
    assert code == 0, text
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["per_source"][noise]["false_alarm_rate"] >= 0.1
    assert len(m["notes"]) == 1 and noise in m["notes"][0] and "another survey" in m["notes"][0]
    assert "note:" in text and "another survey" in text
    rows = {"a": {"label": "real", "n": 100, "false_alarm_rate": 0.05},
            "b": {"label": "real", "n": 100, "false_alarm_rate": 0.5},
            "c": {"label": "real", "n": 5, "false_alarm_rate": 0.9},
            "d": {"label": "synthetic", "n": 100, "recall": 0.1}}
    notes = unlike_real_notes({"per_source": rows}, 0.01)
    assert len(notes) == 1 and " b " in notes[0]
    strict = unlike_real_notes({"per_source": rows}, 0.001)  # a 10% floor, not 10x alone
    assert len(strict) == 1 and " b " in strict[0]


def test_predict_reports_corrupt_file(trained, toy, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = next(Path(toy["fake_eval"]).glob("*.png"))
    results = predict_detector(trained.run_dir, [bad, good])
    assert results[0]["synthetic_score"] is None and "broken.png" in results[0]["error"]
    assert 0.0 <= results[1]["synthetic_score"] <= 1.0 and results[1]["error"] is None
    assert results[1]["verdict"] in ("real", "synthetic") and results[0]["verdict"] is None


def _cli(capsys, *args: str) -> tuple[int, str]:
    """Run the real CLI entry point in-process: exit code and everything it printed."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def test_cli_predict_exit_codes(trained, toy, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    good = next(Path(toy["fake_eval"]).glob("*.png"))
    code, text = _cli(capsys, "detector", "predict", str(trained.run_dir), str(bad), str(good))
    assert code == 0, text
    assert "broken.jpg" in text and "1 of 2" in text
    code, text = _cli(capsys, "detector", "predict", str(trained.run_dir), str(bad))
    assert code == 1 and "Traceback" not in text
    code, text = _cli(capsys, "detector", "predict", str(tmp_path / "no_run"), str(good))
    assert code == 2 and "Traceback" not in text and "no_run" in text


def test_cli_train_bad_spec_is_one_line(tmp_path, capsys):
    code, text = _cli(capsys, "detector", "train", "--real", str(tmp_path / "nothing.csv"),
                      "--fake", str(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 2 and "Traceback" not in text
    assert "nothing.csv" in text


def test_cli_train_degrades_images_only_when_asked(tmp_path, capsys, monkeypatch):
    """No blur/JPEG/resampling of both classes by default (it cost held-out generators
    accuracy in bench_detector); --augment turns it on."""
    seen = _train_option_seen(capsys, monkeypatch, tmp_path, "augment",
                              [[], ["--augment"], ["--no-augment"]])
    assert seen == [False, True, False]


def _train_option_seen(capsys, monkeypatch, tmp_path, key: str, extras: list[list[str]]) -> list:
    """The value ``detector train`` passes as ``key`` to ``train_detector`` for each set of
    extra CLI arguments (the training itself is replaced by a stub)."""
    import galaxymorph.detection as detection

    seen: list = []

    def fake_train(*args, **kwargs):
        seen.append(kwargs[key])
        raise SystemExit(0)

    monkeypatch.setattr(detection, "train_detector", fake_train)
    args = ["detector", "train", "--real", "r", "--fake", "f", "--out", str(tmp_path / "cli")]
    for extra in extras:
        _cli(capsys, *args, *extra)
    return seen


def test_thresholds_are_set_on_a_reserve_of_real_images_never_trained_on(tmp_path, toy):
    """Real images beyond the balanced set go to a calibration reserve: not trained on, scored
    with the validation fold's real images to set both thresholds, and never reused by evaluate
    as 'fresh' real images."""
    from galaxymorph.detection import load_detector, train_detector
    from galaxymorph.detection.run_folder import calibration_files, reference_files, training_groups

    extra = f"catalog:{write_synthetic_catalog(tmp_path / 'more_real', 20, size=32, seed=5)}"
    run = train_detector([toy["real"], extra], toy["fake"], tmp_path / "run",
                         calibration_real=50, **(FAST | {"epochs": 1})).run_dir
    data = run / "data"
    cal = pd.read_csv(data / "calibration.csv")
    train = pd.read_csv(data / "detector_catalog.csv")
    assert len(cal) == 50 and (cal["label"] == 0).all()
    assert not set(cal["origin"]) & set(train["origin"])  # no image both trained on and reserved
    assert all((data / f).is_file() for f in cal["filename"])
    # The reserve leaves each real source spare candidates to replace unreadable training images.
    sources = [x for x in json.loads((data / "assembly.json").read_text())["sources"]
               if x["side"] == "real"]
    assert sum(x["reserved_for_calibration"] for x in sources) == len(cal)
    assert all(x["available"] - x["used"] - x["reserved_for_calibration"] >= np.ceil(0.05 * x["used"])
               for x in sources)
    info = json.loads((run / "detector.json").read_text())
    split = json.loads((run / "split.json").read_text())
    real_val = train[train["filename"].isin(set(split["val"])) & (train["label"] == 0)]
    # With the noise statistics, every other reserve image joins their reference and the
    # rest calibrate: the two halves are disjoint and together the whole reserve.
    calibrating, referencing = calibration_files(run, info), reference_files(run, info)
    assert info["statistics_reference_reserve"] and len(calibrating) == len(referencing) == 25
    assert sorted(map(str, calibrating + referencing)) == sorted(str(data / f) for f in cal["filename"])
    real_train = train[train["filename"].isin(set(split["train"])) & (train["label"] == 0)]
    assert info["statistics_reference"] == len(real_train) + 25
    assert load_detector(run).by_statistics.reference.shape[0] == len(real_train) + 25
    assert info["threshold_rule"]["n_real"] == len(real_val) + 25
    det = load_detector(run)
    files = [data / f for f in real_val["filename"]] + calibrating
    parts = {k: np.concatenate([det.parts(b)[k] for _, b in det.prepared_batches(files)])
             for k in ("p_network", "p_statistics", "atypicality_distance")}
    assert det.rule.cut == pytest.approx(threshold_at_false_alarm(det.rule.logits(parts), 0.01))
    assert set(cal["group"].astype(str)) <= training_groups(run)


def test_noise_statistics_tell_a_noiseless_image_from_a_noisy_one():
    """The second fake-free reference: a smooth image and a noisy one differ in every
    high-frequency statistic, and the statistics do not depend on the batch around them."""
    import torch

    from galaxymorph.detection.statistics import STATISTICS, noise_statistics

    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.uniform(0, 255, (3, 32, 32)), (0, 4, 4))
    noisy = smooth + rng.normal(0, 12, smooth.shape)
    batch = torch.from_numpy(np.stack([smooth, noisy]).clip(0, 255).astype(np.uint8))
    s = noise_statistics(batch)
    assert s.shape == (2, len(STATISTICS)) and np.isfinite(s).all()
    noise_columns = [i for i, name in enumerate(STATISTICS) if name.endswith(("_std", "_mad", "_power"))
                     or name.startswith("border_highpass_std_")]
    assert len(noise_columns) == 8 and (s[1, noise_columns] > s[0, noise_columns]).all()
    np.testing.assert_allclose(noise_statistics(batch[1:]), s[1:])
    # Detectors fitted with the first five statistics get exactly those five.
    np.testing.assert_allclose(noise_statistics(batch, 5), s[:, :5])
    with pytest.raises(ValueError, match="columns"):
        noise_statistics(batch, 7)


def test_noise_statistics_see_whether_the_bands_share_their_noise():
    """Survey colour images are made of separate exposures per band, so their channels' noise
    is independent; an image whose three channels carry the same noise is told apart by the
    residual correlations, and noise smoothed by a kernel by its autocorrelation."""
    import torch

    from galaxymorph.detection.statistics import STATISTICS, noise_statistics

    rng = np.random.default_rng(1)
    sky = np.full((3, 48, 48), 60.0)
    own = sky + rng.normal(0, 8, sky.shape)  # each band its own noise
    shared = sky + rng.normal(0, 8, (1, 48, 48))  # one noise field in all three
    smoothed = sky + gaussian_filter(rng.normal(0, 20, sky.shape), (0, 1.2, 1.2))
    batch = torch.from_numpy(np.stack([own, shared, smoothed]).clip(0, 255).astype(np.uint8))
    s = dict(zip(STATISTICS, noise_statistics(batch).T, strict=True))
    for pair in ("rg", "gb", "rb"):
        corr = s[f"highpass_corr_{pair}"]
        assert abs(corr[0]) < 0.2 and corr[1] > 0.9
    assert abs(s["highpass_autocorr_1"][0]) < 0.3 < s["highpass_autocorr_1"][2]
    assert (s["sky_clipped"] == 0).all()


def test_detectors_fitted_on_the_first_five_statistics_still_load(trained, toy, tmp_path):
    """A detector whose statistics reference has the five columns of earlier versions scores
    with those five; a reference of a width no version wrote is refused on load."""
    import shutil

    from galaxymorph.detection import load_detector
    from galaxymorph.detection.statistics import STATISTICS, STATISTICS_FILE
    from galaxymorph.detection.typicality import Typicality
    from galaxymorph.errors import DataError

    run = tmp_path / "old"
    shutil.copytree(trained.run_dir, run)
    full = Typicality.load(run / STATISTICS_FILE)
    assert full.reference.shape[1] == len(STATISTICS)
    files = sorted((run / "data" / "images").rglob("*.png"))[:4]
    for width, ok in ((5, True), (7, False)):
        cut = Typicality(full.reference[:, :width], full.mean[:width], full.scale[:width],
                         full.calibration, full.k, full.p_real)
        cut.save(run / STATISTICS_FILE)
        if not ok:
            with pytest.raises(DataError, match="columns"):
                load_detector(run)
            continue
        det = load_detector(run)
        atyp = det.score_prepared_files(files)["atypicality"]
        # (scoring with all sixteen columns against a five-column reference would fail)
        assert np.isfinite(atyp).all() and ((atyp >= 0) & (atyp <= 1)).all()


def test_atypicality_can_leave_the_noise_statistics_out(tmp_path, toy):
    from galaxymorph.detection import load_detector, train_detector
    from galaxymorph.detection.statistics import STATISTICS_FILE
    from galaxymorph.errors import ConfigError

    with pytest.raises(ConfigError, match="atypicality"):
        train_detector(toy["real"], toy["fake"], tmp_path / "bad", atypicality="pixels", **FAST)
    run = train_detector(toy["real"], toy["fake"], tmp_path / "run", atypicality="features",
                         **(FAST | {"epochs": 1})).run_dir
    det = load_detector(run)
    assert det.typicality is not None and det.by_statistics is None
    assert not (run / STATISTICS_FILE).exists()
    assert json.loads((run / "detector.json").read_text())["typicality_statistics"] is None


def test_atypicality_can_be_the_noise_statistics_alone(tmp_path, toy):
    """``atypicality="statistics"``: the fake-free score is the statistics' percentile alone
    (the features' reference is still written), and the verdict has it as a part."""
    from galaxymorph.detection import load_detector, train_detector
    from galaxymorph.detection.statistics import noise_statistics

    run = train_detector(toy["real"], toy["fake"], tmp_path / "run", atypicality="statistics",
                         **(FAST | {"epochs": 1})).run_dir
    det = load_detector(run)
    assert det.typicality is not None and det.by_statistics is not None
    files = sorted((run / "data" / "images").rglob("*.png"))
    batches = list(det.prepared_batches(files))
    got = np.concatenate([det.atypicality(b) for _, b in batches])
    alone = np.concatenate([det.by_statistics.atypicality(noise_statistics(b)) for _, b in batches])
    both = np.fmax(alone, np.concatenate([det.typicality.atypicality(det.features(b))
                                          for _, b in batches]))
    np.testing.assert_allclose(got, alone)
    assert (both > alone).any()  # the features would have changed it
    assert "atypicality" in det.rule.parts  # the verdict's fake-free part


def test_resynth_keeps_the_galaxy_and_changes_its_pixel_statistics(tmp_path, toy):
    """The training-only ``resynth`` family: real images smoothed and re-noised at their own
    noise level: the same galaxy (low frequencies kept), other fine detail, reproducible."""
    from galaxymorph.detection.generators import family_specs, resynthesise
    from galaxymorph.errors import ConfigError

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    galaxy = 40 + 150 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 60.0)
    real = np.clip(galaxy[..., None] + rng.normal(0, 6, (64, 64, 3)), 0, 255).astype(np.uint8)
    outs = [resynthesise(real, np.random.default_rng(s)) for s in range(6)]
    for out in outs:
        assert out.shape == real.shape and out.dtype == np.uint8
        low = lambda a: gaussian_filter(a.astype(float), (3, 3, 0))  # noqa: E731
        assert np.abs(low(out) - low(real)).mean() < 3  # the same galaxy
        assert np.abs(out.astype(int) - real.astype(int)).mean() > 2  # not the same pixels
    assert (resynthesise(real, np.random.default_rng(3)) == outs[3]).all()
    made = family_specs(["resynth"], tmp_path / "gen", real_spec=toy["real"], n=12, size=32,
                        real_crop=1.0, seed=0)
    df = pd.read_csv(made["resynth"].removeprefix("catalog:"))
    assert len(df) == 12 and (df["label_name"] == "resynth").all()
    with pytest.raises(ConfigError, match="resynth"):
        family_specs(["nope"], tmp_path / "gen2", real_spec=toy["real"], n=2, size=32,
                     real_crop=1.0, seed=0)


def _band_noise_batch(rng, n: int, shared: bool):
    """Sky with each band's own noise (as survey images are made) or one noise in all three."""
    import torch

    sky = np.full((n, 3, 32, 32), 60.0)
    noise = rng.normal(0, 8, (n, 1 if shared else 3, 32, 32))
    return torch.from_numpy((sky + noise).clip(0, 255).astype(np.uint8))


def test_statistics_head_learns_a_family_from_its_statistics_and_loads_only_sane_files(tmp_path):
    """The supervised head: images whose bands share their noise (a generator's tell) get a
    high p(synthetic), survey-like ones a low one; it round-trips through its file and a file
    with the wrong width, a NaN or a pickled object is refused with the file named."""
    from galaxymorph.detection.statistics import noise_statistics
    from galaxymorph.detection.statistics_head import StatisticsHead, p_either
    from galaxymorph.errors import DataError

    rng = np.random.default_rng(0)
    real = noise_statistics(_band_noise_batch(rng, 60, shared=False))
    fake = noise_statistics(_band_noise_batch(rng, 30, shared=True))
    head = StatisticsHead.fit(np.r_[real, fake], np.r_[np.zeros(60), np.ones(30)])
    new_real = head.p(noise_statistics(_band_noise_batch(rng, 20, shared=False)))
    new_fake = head.p(noise_statistics(_band_noise_batch(rng, 20, shared=True)))
    assert new_real.max() < 0.5 < new_fake.min()
    with pytest.raises(ValueError, match="real and generated"):
        StatisticsHead.fit(real, np.zeros(60))
    head.save(tmp_path / "head.npz")
    back = StatisticsHead.load(tmp_path / "head.npz")
    np.testing.assert_allclose(back.p(fake), head.p(fake))
    # Synthetic by either: the more confident of the two.
    np.testing.assert_allclose(p_either([0.2, 0.9, 0.99], [0.5, 0.0, 0.99]), [0.5, 0.9, 0.99])
    bad = {"width": dict(mean=head.mean[:7], scale=head.scale[:7], coef=head.coef[:7]),
           "nan": dict(mean=head.mean, scale=head.scale, coef=np.r_[np.nan, head.coef[1:]])}
    for name, arrays in bad.items():
        np.savez(tmp_path / f"{name}.npz", intercept=np.array(head.intercept), **arrays)
        with pytest.raises(DataError, match="inconsistent") as err:
            StatisticsHead.load(tmp_path / f"{name}.npz")
        assert f"{name}.npz" in str(err.value)
    np.savez(tmp_path / "pickle.npz", mean=np.array([{"a": 1}], dtype=object), scale=head.scale,
             coef=head.coef, intercept=np.array(head.intercept))
    with pytest.raises(DataError, match="readable"):
        StatisticsHead.load(tmp_path / "pickle.npz")


def test_the_statistics_head_is_a_part_of_the_verdict(trained, tmp_path):
    """A detector trains a statistics head by default (on its training fold's real and
    generated images): its p(synthetic) is a part of the verdict beside the network's, and a
    head file detector.json does not name is not used (a detector trained with
    ``--no-statistics-head`` or before heads existed)."""
    import shutil

    from galaxymorph.detection import load_detector
    from galaxymorph.detection.statistics import noise_statistics
    from galaxymorph.detection.statistics_head import STATISTICS_HEAD_FILE

    run = trained.run_dir
    info = json.loads((run / "detector.json").read_text())
    assert info["settings"]["statistics_head"] is True
    assert info["statistics_head"] == STATISTICS_HEAD_FILE
    df = pd.read_csv(run / "data" / "detector_catalog.csv")
    train = set(json.loads((run / "split.json").read_text())["train"])
    n_fake = int((df["filename"].isin(train) & (df["label"] == 1)).sum())
    assert info["statistics_head_fit"]["n_synthetic"] == n_fake
    assert info["statistics_head_fit"]["n_real"] == info["statistics_reference"]
    det = load_detector(run)
    assert det.rule.parts == ("p_network", "p_statistics", "atypicality")
    files = sorted((run / "data" / "images").rglob("*.png"))[:12]
    (_, batch), = det.prepared_batches(files)
    p_net, p_head = det.p_network(batch), det.head.p(noise_statistics(batch))
    scores = det.scores(batch)
    np.testing.assert_allclose(scores["p_network"], p_net)
    np.testing.assert_allclose(scores["p_statistics"], p_head)
    assert not np.allclose(p_head, 0)  # the head has a say on the toy's images
    import pickle  # the Ray engine ships the detector to its workers

    again = pickle.loads(pickle.dumps(det)).scores(batch)
    np.testing.assert_allclose(again["synthetic_score"], scores["synthetic_score"])
    assert again["verdict"].tolist() == scores["verdict"].tolist()
    old = tmp_path / "old"
    shutil.copytree(run, old)
    info["statistics_head"] = None
    (old / "detector.json").write_text(json.dumps(info))
    assert (old / STATISTICS_HEAD_FILE).exists()
    # A verdict that combines a head detector.json does not name: files of two calibrations.
    with pytest.raises(DataError, match=r"combines p_statistics.*statistics_head\.npz") as err:
        load_detector(old)
    assert "detector.json" in str(err.value)
    (old / "detector.json").write_text(json.dumps(info | {"verdict_model": None}))
    stale = load_detector(old)
    assert stale.head is None and np.isnan(stale.scores(batch)["p_statistics"]).all()


def test_detector_train_can_leave_the_statistics_head_out(tmp_path, toy, capsys, monkeypatch):
    from galaxymorph.detection import load_detector, train_detector
    from galaxymorph.detection.statistics_head import STATISTICS_HEAD_FILE

    run = train_detector(toy["real"], toy["fake"], tmp_path / "run", statistics_head=False,
                         **(FAST | {"epochs": 1})).run_dir
    info = json.loads((run / "detector.json").read_text())
    assert info["statistics_head"] is None and info["settings"]["statistics_head"] is False
    assert not (run / STATISTICS_HEAD_FILE).exists()
    assert load_detector(run).head is None
    assert _train_option_seen(capsys, monkeypatch, tmp_path, "statistics_head",
                              [[], ["--no-statistics-head"]]) == [True, False]
