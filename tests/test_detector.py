"""Real-vs-synthetic detector: balanced grouped assembly, a short training that beats chance,
the metrics evaluate writes, and unreadable inputs reported rather than crashing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from galaxymorph.cli.main import main
from galaxymorph.data.splits import make_split
from galaxymorph.data.synthetic import make_synthetic_arrays, write_synthetic_catalog
from galaxymorph.detection import assemble, detector_metrics, evaluate_detector, predict_detector
from galaxymorph.detection.assembly import water_fill
from galaxymorph.detection.scoring import METRIC_KEYS

FAST = dict(image_size=32, epochs=3, patience=0, batch_size=16, lr=1e-3, progress=False,
            threads=2, cache=False)


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
    m = detector_metrics(y, p, ["r"] * 3 + ["f"] * 3)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(7 / 9)
    assert m["per_source"]["f"]["accuracy"] == pytest.approx(2 / 3)
    assert detector_metrics(np.zeros(3), np.full(3, 0.2))["roc_auc"] is None


def test_predict_reports_corrupt_file(trained, toy, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = next(Path(toy["fake_eval"]).glob("*.png"))
    results = predict_detector(trained.run_dir, [bad, good])
    assert results[0]["p_synthetic"] is None and "broken.png" in results[0]["error"]
    assert 0.0 <= results[1]["p_synthetic"] <= 1.0 and results[1]["error"] is None


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
