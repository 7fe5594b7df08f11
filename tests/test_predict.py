"""Batch prediction: inputs, output formats, errors in rows, resume, crash safety, CLI."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import galaxymorph
from galaxymorph.errors import ConfigError, DataError, ModelError
from galaxymorph.inference import predict as predict_mod
from galaxymorph.models.loading import load_classifier

N_PNG = 8  # 6 at the top of the folder, 2 in a subfolder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, inference_catalog):
    """PNGs (one level nested), a FITS cutout, a corrupt JPEG and files that are not images."""
    from astropy.io import fits

    root = tmp_path_factory.mktemp("predict_in") / "cutouts"
    (root / "deeper").mkdir(parents=True)
    images = sorted((inference_catalog.parent / "images").glob("*.png"))
    for p in images[:6]:
        shutil.copy(p, root / p.name)
    for p in images[6:8]:
        shutil.copy(p, root / "deeper" / p.name)
    yy, xx = np.mgrid[0:48, 0:48]
    blob = np.exp(-((xx - 24.0) ** 2 + (yy - 24.0) ** 2) / 40.0).astype(np.float32)
    fits.PrimaryHDU(blob).writeto(root / "deeper" / "stamp.fits")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "notes.txt").write_text("not an image: ignored by the folder walk")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["error"].fillna("") == ""]


def _prob_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("prob_")]


def test_folder_to_csv_with_corrupt_and_fits(tiny_model, image_folder, tmp_path):
    out = tmp_path / "preds.csv"
    summary = galaxymorph.predict(image_folder, model=tiny_model, out=out, batch_size=4, progress=False)
    classes = load_classifier(tiny_model).class_names
    df = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(df.columns) == ["path", "label", "label_name", "probability", "uncertain",
                                *[f"prob_{c}" for c in classes], "error"]
    assert len(df) == N_PNG + 2 and summary.n_images == N_PNG + 2
    assert summary.n_errors == 1 and summary.n_ok == N_PNG + 1
    broken = df[df["path"].str.endswith("broken.jpg")]
    assert len(broken) == 1 and "corrupt" in broken["error"].iloc[0]
    assert broken["label"].isna().all() and broken["probability"].isna().all()
    ok = _ok(df)
    assert any(p.endswith("stamp.fits") for p in ok["path"])
    probs = ok[_prob_cols(df)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (ok["label"].astype(int).to_numpy() == probs.argmax(axis=1)).all()
    np.testing.assert_allclose(ok["probability"], probs.max(axis=1))
    threshold = load_classifier(tiny_model).abstain_threshold  # fitted on its validation fold
    flagged = ok["uncertain"].map(lambda v: str(v) == "True")  # CSV cells True/False, empty on errors
    assert (flagged == (ok["probability"] < threshold)).all() and broken["uncertain"].isna().all()
    assert (ok["label_name"] == [classes[i] for i in probs.argmax(axis=1)]).all()
    text = str(summary)
    assert f"{N_PNG + 2} images, 1 unreadable" in text and "broken.jpg" in text
    assert not any("notes.txt" in p or ".hidden" in p for p in df["path"])


def test_python_api_returns_dataframe_in_input_order(tiny_model, image_folder):
    assert galaxymorph.predict is predict_mod.predict
    files = sorted(str(p) for p in image_folder.glob("syn_*.png"))[:3]
    files.append(str(image_folder / "broken.jpg"))
    df = galaxymorph.predict(files, model=tiny_model, batch_size=2, progress=False)
    assert list(df["path"]) == files
    assert df.attrs["summary"]["n_errors"] == 1 and df.attrs["summary"]["n_images"] == 4
    # Same numbers as the classifier applied by hand.
    from galaxymorph.data.imageio import read_image

    clf = load_classifier(tiny_model)
    expected = clf.predict_proba([read_image(f) for f in files[:3]])
    np.testing.assert_allclose(df[_prob_cols(df)].to_numpy()[:3], expected, atol=1e-6)



def test_tta_is_opt_in_for_batch_prediction(tiny_model, image_folder, tmp_path):
    """A card that evaluates with TTA must not make survey-scale `predict` 8x slower."""
    model = tmp_path / "tta_model"
    shutil.copytree(tiny_model, model)
    card = json.loads((model / "model_card.json").read_text())
    card["tta_default"] = True
    (model / "model_card.json").write_text(json.dumps(card))
    files = sorted(str(p) for p in image_folder.glob("syn_*.png"))[:4]
    plain = galaxymorph.predict(files, model=model, progress=False)
    single = galaxymorph.predict(files, model=model, tta=False, progress=False)
    averaged = galaxymorph.predict(files, model=model, tta=True, progress=False)
    cols = _prob_cols(plain)
    np.testing.assert_allclose(plain[cols].to_numpy(), single[cols].to_numpy(), atol=1e-6)
    assert not np.allclose(plain[cols].to_numpy(), averaged[cols].to_numpy(), atol=1e-4)
    # The card's own setting is still what `Classifier.predict_proba` (the app, evaluate) uses.
    from galaxymorph.data.imageio import read_image

    clf = load_classifier(model)
    np.testing.assert_allclose(clf.predict_proba([read_image(f) for f in files]),
                               averaged[cols].to_numpy(), atol=1e-6)

def test_tta_gives_the_network_every_core(tiny_model, image_folder, monkeypatch):
    """With TTA the network does 8 passes per decoded image: it gets all the cores; without,
    the decoders keep their share."""
    from galaxymorph.inference import predict as predict_mod

    assert predict_mod.engine_threads(2, 2, tta=False) == 1
    assert predict_mod.engine_threads(2, 2, tta=True) == 2
    assert predict_mod.engine_threads(16, 8, tta=False) == 12
    monkeypatch.setattr(predict_mod.os, "cpu_count", lambda: 6)
    seen: list[int] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    files = sorted(str(p) for p in image_folder.glob("syn_*.png"))[:2]
    galaxymorph.predict(files, model=tiny_model, tta=True, workers=2, progress=False)
    galaxymorph.predict(files, model=tiny_model, tta=False, workers=2, progress=False)
    assert seen[0] == 6 and seen[2] == 5  # (each run restores the previous count after)


def test_workers_keep_order_and_numbers(tiny_model, image_folder):
    one = galaxymorph.predict(image_folder, model=tiny_model, batch_size=3, workers=0, progress=False)
    two = galaxymorph.predict(image_folder, model=tiny_model, batch_size=3, workers=2, progress=False)
    assert list(one["path"]) == list(two["path"])
    np.testing.assert_allclose(one[_prob_cols(one)].to_numpy(), two[_prob_cols(two)].to_numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_other_formats_match_csv(tiny_model, image_folder, tmp_path, suffix):
    ref = galaxymorph.predict(image_folder, model=tiny_model, batch_size=4, progress=False)
    out = tmp_path / f"preds{suffix}"
    galaxymorph.predict(image_folder, model=tiny_model, batch_size=4, out=out, progress=False)
    if suffix == ".json":
        got = pd.DataFrame(json.loads(out.read_text()))
    elif suffix == ".jsonl":
        got = pd.read_json(out, lines=True)
    else:
        got = pd.read_parquet(out)
    assert list(got.columns) == list(ref.columns) and list(got["path"]) == list(ref["path"])
    np.testing.assert_allclose(got[_prob_cols(got)].to_numpy(dtype=float),
                               ref[_prob_cols(ref)].to_numpy(dtype=float), atol=1e-12)
    assert (got["error"].fillna("") != "").sum() == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_resume_skips_done_images(tiny_model, image_folder, tmp_path, suffix):
    out = tmp_path / f"preds{suffix}"
    first = sorted(str(p) for p in image_folder.glob("syn_*.png"))[:3]
    s1 = galaxymorph.predict(first, model=tiny_model, out=out, batch_size=2, progress=False)
    assert s1.n_images == 3
    with pytest.raises(ConfigError, match="exists"):
        galaxymorph.predict(image_folder, model=tiny_model, out=out, progress=False)
    s2 = galaxymorph.predict(image_folder, model=tiny_model, out=out, resume=True, batch_size=2,
                          progress=False)
    assert s2.n_images == N_PNG + 2 - 3 and s2.skipped == 3
    paths = _read_paths(out)
    assert len(paths) == N_PNG + 2 and len(set(paths)) == len(paths)
    s3 = galaxymorph.predict(image_folder, model=tiny_model, out=out, resume=True, progress=False)
    assert s3.n_images == 0 and len(_read_paths(out)) == N_PNG + 2


def test_resume_after_a_cut_csv_line(tiny_model, image_folder, tmp_path):
    """A crash mid-row leaves a partial last line: resume drops it and predicts that image again."""
    out = tmp_path / "preds.csv"
    galaxymorph.predict(image_folder, model=tiny_model, out=out, batch_size=4, progress=False)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:15])  # header, 3 rows, a cut row
    galaxymorph.predict(image_folder, model=tiny_model, out=out, resume=True, progress=False)
    df = pd.read_csv(out)
    assert len(df) == N_PNG + 2 and df["path"].is_unique


def _read_paths(out) -> list[str]:
    if out.suffix == ".csv":
        return list(pd.read_csv(out)["path"])
    if out.suffix == ".jsonl":
        return [json.loads(line)["path"] for line in out.read_text().splitlines() if line.strip()]
    if out.suffix == ".json":
        return [r["path"] for r in json.loads(out.read_text())]
    return list(pd.read_parquet(out)["path"])


def test_inputs_are_walked_once_whatever_the_worker_count(tiny_model, image_folder, tmp_path,
                                                          monkeypatch):
    """Decoders get chunks from the one walk in predict; none walks the input tree itself
    (the walks are logged to a file, so walks in forked decoders count too)."""
    from galaxymorph.inference.sources import InputPlan

    log = tmp_path / "walks.log"
    real_iter = InputPlan.__iter__

    def logged(self):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        yield from real_iter(self)

    monkeypatch.setattr(InputPlan, "__iter__", logged)
    for workers in (0, 2):
        log.write_text("")
        df = galaxymorph.predict(image_folder, model=tiny_model, batch_size=2, workers=workers,
                                 progress=False)
        assert len(df) == N_PNG + 2
        assert log.read_text().splitlines() == [str(os.getpid())]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_failure_mid_run_leaves_a_valid_file(tiny_model, image_folder, tmp_path, monkeypatch, suffix):
    from galaxymorph.inference import batches as batches_mod

    real = batches_mod.make_rows
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM turned into one
        return real(*args, **kwargs)

    monkeypatch.setattr(batches_mod, "make_rows", failing)  # the rows of each batch
    out = tmp_path / f"preds{suffix}"
    with pytest.raises(KeyboardInterrupt):
        galaxymorph.predict(image_folder, model=tiny_model, out=out, batch_size=2, workers=0,
                         progress=False)
    assert len(_read_paths(out)) == 4  # two batches of two, in a file that parses
    monkeypatch.setattr(batches_mod, "make_rows", real)
    galaxymorph.predict(image_folder, model=tiny_model, out=out, resume=True, progress=False)
    assert sorted(_read_paths(out)) == sorted(set(_read_paths(out)))
    assert len(_read_paths(out)) == N_PNG + 2


def test_glob_input(tiny_model, image_folder):
    df = galaxymorph.predict(str(image_folder / "*.png"), model=tiny_model, progress=False)
    assert len(df) == 6 and df["path"].str.endswith(".png").all()
    deep = galaxymorph.predict(str(image_folder / "**" / "*.fits"), model=tiny_model, progress=False)
    assert len(deep) == 1 and deep["error"].iloc[0] == ""


def test_dataset_spec_inputs(tiny_model, inference_catalog, tmp_path):
    from galaxymorph.data.synthetic import write_synthetic_h5

    n_catalog = len(pd.read_csv(inference_catalog))
    df = galaxymorph.predict(f"catalog:{inference_catalog}", model=tiny_model, progress=False)
    assert len(df) == n_catalog and (df["error"] == "").all()
    bare = galaxymorph.predict(str(inference_catalog), model=tiny_model, progress=False)
    assert list(bare["path"]) == list(df["path"])
    h5 = write_synthetic_h5(tmp_path / "g10.h5", 2, size=64, seed=3)
    rows = galaxymorph.predict(f"galaxy10-decals:{h5}", model=tiny_model, progress=False)
    assert len(rows) == 8 and rows["path"].iloc[0].endswith("g10.h5#0")
    assert np.allclose(rows[_prob_cols(rows)].sum(axis=1), 1.0)


def test_detector_adds_its_score_verdict_and_parts(tiny_model, image_folder, tmp_path):
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.network import build_network

    det_dir = tmp_path / "detector"
    card = ModelCard(architecture="cnn2", class_names=["real", "synthetic"], image_size=24, crop=1.0)
    save_artifact(det_dir, build_network("cnn2", 2), card)
    df = galaxymorph.predict(image_folder, model=tiny_model, batch_size=4, progress=False,
                             detector=galaxymorph.load_detector(det_dir))
    assert list(df.columns)[-7:] == ["synthetic_score", "verdict", "flagged_by", "p_network",
                                     "p_statistics", "atypicality", "error"]
    ok, bad = _ok(df), df[df["error"] != ""]
    assert ok["synthetic_score"].between(0, 1).all() and bad["synthetic_score"].isna().all()
    assert set(ok["verdict"]) <= {"real", "synthetic"} and bad["verdict"].isna().all()
    # A bare classifier decides on its own p(synthetic) at 0.5: the network alone flags.
    np.testing.assert_allclose(ok["synthetic_score"], ok["p_network"])
    assert (ok["verdict"] == np.where(ok["p_network"] >= 0.5, "synthetic", "real")).all()
    assert set(ok["flagged_by"].fillna("")) <= {"", "p_network"}
    assert df["atypicality"].isna().all()  # a bare classifier has no typicality reference
    with pytest.raises(ModelError, match="synthetic"):
        galaxymorph.load_detector(tiny_model)
    with pytest.raises(ConfigError, match="load_detector"):
        galaxymorph.predict(image_folder, model=tiny_model, detector=det_dir, progress=False)


def test_one_score_per_image_whichever_command_asks(tiny_model, image_folder, tmp_path):
    """predict --detector, detector predict and the app frame an input the same way: the
    chain and real-image crop of detector.json."""
    from galaxymorph.app.core import analyse
    from galaxymorph.data.imageio import read_image
    from galaxymorph.detection import predict_detector
    from galaxymorph.detection.assembly import Resampling
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.network import build_network

    det_dir = tmp_path / "detector"
    card = ModelCard(architecture="cnn2", class_names=["real", "synthetic"], image_size=24, crop=1.0)
    save_artifact(det_dir, build_network("cnn2", 2), card)
    (det_dir / "detector.json").write_text(json.dumps(
        {"resampling": {"image_size": 24, "common_size": 16}, "real_crop": 0.8}))
    files = sorted(str(p) for p in image_folder.glob("syn_*.png"))[:3]
    det = galaxymorph.load_detector(det_dir)
    df = galaxymorph.predict(files, model=tiny_model, detector=det, progress=False)
    x = torch.stack([Resampling(24, 16).apply(read_image(f), 0.8) for f in files])
    expected = load_classifier(det_dir).predict_proba(x)[:, 1]
    np.testing.assert_allclose(df["synthetic_score"], expected, atol=1e-6)
    direct = [r["synthetic_score"] for r in predict_detector(det_dir, files)]
    np.testing.assert_allclose(direct, expected, atol=1e-6)
    from galaxymorph.cli.main import main

    out = tmp_path / "cli.csv"
    with pytest.raises(SystemExit) as exc:
        main(["predict", *files, "--model", str(tiny_model), "--detector", str(det_dir),
              "--out", str(out), "--no-progress"])
        raise SystemExit(0)
    assert not exc.value.code
    np.testing.assert_allclose(pd.read_csv(out)["synthetic_score"], expected, atol=1e-6)
    clf = load_classifier(tiny_model)
    app = [analyse(clf, read_image(f), f, with_cam=False, detector=det).synthetic_score for f in files]
    np.testing.assert_allclose(app, expected, atol=1e-6)
    # A bad field in detector.json is one clear error naming the file.
    (det_dir / "detector.json").write_text(json.dumps({"real_crop": 3}))
    with pytest.raises(DataError, match="real_crop"):
        galaxymorph.load_detector(det_dir)


def test_bad_arguments_are_clear(tiny_model, image_folder, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        galaxymorph.predict(tmp_path / "missing", model=tiny_model, progress=False)
    with pytest.raises(DataError, match="matches no files"):
        galaxymorph.predict(str(tmp_path / "*.png"), model=tiny_model, progress=False)
    with pytest.raises(ConfigError, match="output type"):
        galaxymorph.predict(image_folder, model=tiny_model, out=tmp_path / "x.xlsx", progress=False)
    with pytest.raises(ConfigError, match="--out"):
        galaxymorph.predict(image_folder, model=tiny_model, resume=True, progress=False)
    with pytest.raises(ModelError):
        galaxymorph.predict(image_folder, model=tmp_path / "nomodel", progress=False)


# -- command line -----------------------------------------------------------------------------


def _cli(args: list[str]) -> int:
    from galaxymorph.cli.main import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_predict_writes_and_summarises(tiny_model, image_folder, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    code = _cli(["predict", "--model", str(tiny_model), "--out", str(out), "--batch-size", "4",
                 "--no-progress", str(image_folder)])
    err = capsys.readouterr().err
    assert code == 0 and out.exists()
    assert f"{N_PNG + 2} images, 1 unreadable" in err and "broken.jpg" in err
    assert len(pd.read_csv(out)) == N_PNG + 2
    code = _cli(["predict", "--model", str(tiny_model), "--out", str(out), "--resume",
                 str(image_folder)])
    assert code == 0 and len(pd.read_csv(out)) == N_PNG + 2


def test_cli_stdout_csv(tiny_model, image_folder, capsys):
    code = _cli(["predict", "--model", str(tiny_model), str(image_folder / "*.png")])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("path,label,label_name,probability,uncertain,prob_") and len(lines) == 7


@pytest.mark.parametrize("args, message", [
    (["predict", "--model", "{tmp}/no_such_run", "{img}"], "no such model"),
    (["predict", "--model", "{model}", "{tmp}/no_such_folder"], "no such file or folder"),
    (["predict", "--model", "{model}", "--engine", "spark", "{img}"], "unknown engine"),
    (["export", "{tmp}/no_such_run", "--out", "{tmp}/m.onnx"], "no such model"),
    (["export", "{model}", "--format", "tflite", "--out", "{tmp}/m.onnx"], "unknown export format"),
])
def test_cli_errors_exit_2_without_traceback(tiny_model, image_folder, tmp_path, capsys, args, message):
    filled = [a.format(tmp=tmp_path, img=image_folder, model=tiny_model) for a in args]
    code = _cli(filled)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
