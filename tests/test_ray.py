"""The Ray Data engine gives the local engine's rows (one Ray start: about 10-20 s)."""

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


def test_ray_engine_matches_local(tiny_model, ray_inputs, tmp_path):
    local = galaxymorph.predict(ray_inputs, model=tiny_model, batch_size=4, progress=False)
    out = tmp_path / "ray.csv"
    summary = galaxymorph.predict(ray_inputs, model=tiny_model, batch_size=4, out=out, engine="ray",
                               workers=1, progress=False)
    assert summary.engine == "ray" and summary.n_images == 11 and summary.n_errors == 1
    remote = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(remote.columns) == list(local.columns)
    merged = local.merge(remote, on="path", suffixes=("_local", "_ray"))
    assert len(merged) == len(local) == len(remote) == 11
    ok = merged["error_local"] == ""
    assert (merged["error_ray"].fillna("") == merged["error_local"]).all()
    assert (merged.loc[ok, "label_local"].astype(int) == merged.loc[ok, "label_ray"].astype(int)).all()
    for col in [c for c in local.columns if c.startswith("prob_")]:
        np.testing.assert_allclose(merged.loc[ok, f"{col}_ray"], merged.loc[ok, f"{col}_local"],
                                   atol=1e-5)


def test_missing_ray_is_a_clear_error(tiny_model, ray_inputs, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"galaxymorph\[ray\]"):
        galaxymorph.predict(ray_inputs, model=tiny_model, engine="ray", progress=False)
