"""The Ray Data engine gives the local engine's rows (a Ray start per test: about 10-20 s)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest

import galaxymorph
from galaxymorph.errors import ConfigError


@pytest.fixture(scope="module")
def ray_inputs(tmp_path_factory, inference_catalog):
    root = tmp_path_factory.mktemp("ray_in")
    for p in sorted((inference_catalog.parent / "images").glob("*.png"))[:10]:
        shutil.copy(p, root / p.name)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


@pytest.fixture
def ray_session():
    """A local Ray for each test's run, which finds it started, as on a cluster. (One Ray for
    the whole module saved 20-40 s, but once, in a fresh clone's run, the third dataset of that
    session never got its first task scheduled and the suite hung in Ray 2.60's
    ``from_arrow_refs``; a session per run has not.) Starting and stopping its own Ray is
    tested in test_faults.py."""
    import ray

    from galaxymorph.inference.ray_engine import start_ray

    started = start_ray(2)
    yield
    if started:
        ray.shutdown()


def test_ray_engine_matches_local(tiny_model, ray_inputs, tmp_path, ray_session):
    from makedata import write_catalog

    # A plain folder and a catalog with ra/dec in one run: the catalog's rows carry its columns.
    catalog = write_catalog(tmp_path / "cat", per_class=2, extra=True)
    inputs = [str(ray_inputs), f"catalog:{catalog}"]
    local = galaxymorph.predict(inputs, model=tiny_model, batch_size=4, progress=False)
    out = tmp_path / "ray.csv"
    summary = galaxymorph.predict(inputs, model=tiny_model, batch_size=4, out=out, engine="ray",
                               workers=1, progress=False)
    assert summary.engine == "ray" and summary.n_images == 15 and summary.n_errors == 1
    remote = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(remote.columns) == list(local.columns)
    assert list(remote.columns[-4:]) == ["true_label", "true_label_name", "ra", "dec"]
    merged = local.merge(remote, on="path", suffixes=("_local", "_ray"))
    assert len(merged) == len(local) == len(remote) == 15
    cat = pd.read_csv(catalog).set_index("filename")
    from_catalog = remote[remote["true_label"].notna()]
    want = cat.loc[[p.rpartition("/")[2] for p in from_catalog["path"]]]  # Ray may reorder rows
    assert len(from_catalog) == len(cat)
    assert list(from_catalog["true_label"]) == list(want["label"])
    assert list(from_catalog["true_label_name"]) == list(want["label_name"])
    assert np.allclose(from_catalog[["ra", "dec"]], want[["ra", "dec"]])
    assert remote["ra"].isna().sum() == 11  # the plain files have none
    ok = merged["error_local"] == ""
    assert (merged["error_ray"].fillna("") == merged["error_local"]).all()
    assert (merged.loc[ok, "label_local"].astype(int) == merged.loc[ok, "label_ray"].astype(int)).all()
    for col in [c for c in local.columns if c.startswith("prob_")]:
        np.testing.assert_allclose(merged.loc[ok, f"{col}_ray"], merged.loc[ok, f"{col}_local"],
                                   atol=1e-5)


def test_ray_embeddings_match_local(tiny_model, ray_inputs, tmp_path, ray_session):
    from galaxymorph.inference.embed import embed

    local = embed(ray_inputs, model=tiny_model, batch_size=4, workers=0, progress=False)
    out = tmp_path / "ray.parquet"
    summary = embed(ray_inputs, model=tiny_model, batch_size=4, out=out, engine="ray", workers=1,
                    progress=False)
    assert summary.engine == "ray" and summary.n_images == 11 and summary.n_errors == 1
    remote = pd.read_parquet(out)
    assert list(remote.columns) == list(local.columns) == ["path", "predicted_class", "embedding", "error"]
    merged = local.merge(remote, on="path", suffixes=("_local", "_ray"))
    ok = merged["error_local"] == ""
    assert len(merged) == 11 and ok.sum() == 10
    assert (merged["error_ray"] == merged["error_local"]).all()
    assert merged.loc[~ok, "embedding_ray"].isna().all()
    np.testing.assert_allclose(np.stack(merged.loc[ok, "embedding_ray"]),
                               np.stack(merged.loc[ok, "embedding_local"]), atol=1e-5)
    assert (merged.loc[ok, "predicted_class_ray"] == merged.loc[ok, "predicted_class_local"]).all()


def test_ray_engine_gives_the_detectors_verdict_as_local_does(tiny_model, ray_inputs, tmp_path,
                                                               ray_session):
    """predict --detector on Ray: the same score, verdict (text), flagging parts and parts as
    the local engine, in a typed (Parquet) file; an unreadable image has none of them."""
    from galaxymorph.detection.verdict import Verdict, part_values
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.network import build_network

    det_dir = tmp_path / "detector"
    card = ModelCard(architecture="cnn2", class_names=["real", "synthetic"], image_size=24, crop=1.0)
    save_artifact(det_dir, build_network("cnn2", 2), card)
    det = galaxymorph.load_detector(det_dir)
    bare = galaxymorph.predict(ray_inputs, model=tiny_model, batch_size=4, detector=det,
                               progress=False)
    # A one-part verdict cut at the images' median, so that both verdicts occur.
    z = part_values("p_network", bare.loc[bare["error"] == "", "p_network"].to_numpy())
    centre = z.min() - 1
    det.rule = Verdict(("p_network",), np.array([centre]), np.ones(1), np.ones((1, 1)),
                       np.zeros(1), float(np.median(z) - centre))
    local = galaxymorph.predict(ray_inputs, model=tiny_model, batch_size=4, detector=det,
                                progress=False)
    out = tmp_path / "ray.parquet"
    summary = galaxymorph.predict(ray_inputs, model=tiny_model, batch_size=4, out=out,
                                  engine="ray", workers=1, detector=det, progress=False)
    assert summary.n_images == 11 and summary.n_errors == 1
    remote = pd.read_parquet(out)
    assert list(remote.columns) == list(local.columns)
    merged = local.merge(remote, on="path", suffixes=("_local", "_ray"))
    ok = merged["error_local"] == ""
    assert len(merged) == 11 and ok.sum() == 10
    assert set(merged.loc[ok, "verdict_ray"]) == {"real", "synthetic"}
    for col in ("verdict", "flagged_by"):
        assert list(merged.loc[ok, f"{col}_ray"]) == list(merged.loc[ok, f"{col}_local"]), col
        assert merged.loc[~ok, f"{col}_ray"].isna().all(), col
    assert set(merged.loc[ok & (merged["verdict_ray"] == "synthetic"), "flagged_by_ray"]) == {"p_network"}
    for col in ("synthetic_score", "p_network"):
        np.testing.assert_allclose(merged.loc[ok, f"{col}_ray"], merged.loc[ok, f"{col}_local"],
                                   atol=1e-5)
        assert merged.loc[~ok, f"{col}_ray"].isna().all()


def test_missing_ray_is_a_clear_error(tiny_model, ray_inputs, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"galaxymorph\[ray\]"):
        galaxymorph.predict(ray_inputs, model=tiny_model, engine="ray", progress=False)
