"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MARKER = "shared_data: needs the real images in ../shared/data (fails, never skips, when missing)"


def shared_data_dir() -> Path:
    """``$GALAXYMORPH_SHARED_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("GALAXYMORPH_SHARED_DATA")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", SHARED_MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that take the fixture get the marker, so `-m shared_data` selects them.
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder. Missing data is a failure, not a skip: a skip would hide that the
    real-data checks never ran."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.fail(f"needs the real images in ../shared/data (see README); {root} does not "
                    "exist (set GALAXYMORPH_SHARED_DATA to the folder holding gz1/, "
                    "galaxy10_decals_sample/, gzdecals_ring/)", pytrace=False)
    return root


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private GALAXYMORPH_HOME, so caches and downloads never touch ~/.galaxymorph."""
    home = tmp_path / "galaxymorph_home"
    home.mkdir()
    monkeypatch.setenv("GALAXYMORPH_HOME", str(home))
    return home

# -- inference, export, Ray and app tests (appended by the inference helper) ------------------


@pytest.fixture(scope="session")
def inference_catalog(tmp_path_factory):
    """A small synthetic catalog (24 PNGs, 64 px): ``catalog:`` spec's CSV path."""
    from galaxymorph.data.synthetic import write_synthetic_catalog

    return write_synthetic_catalog(tmp_path_factory.mktemp("inference_syn"), 6, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, inference_catalog):
    """A run folder of a cnn2 trained for one epoch at 32 px: stands in for the default model."""
    import galaxymorph

    out = tmp_path_factory.mktemp("inference_model") / "tiny"
    galaxymorph.train(data=f"catalog:{inference_catalog}", model="cnn2", epochs=1, image_size=32,
                   out=out, progress=False, cache=False, threads=2)
    return out
