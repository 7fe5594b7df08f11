"""Shared test fixtures."""

from __future__ import annotations

import pytest

# -- inference, export, Ray and app tests (appended by the inference helper) ------------------


@pytest.fixture(scope="session")
def inference_catalog(tmp_path_factory):
    """A small synthetic catalog (24 PNGs, 64 px): ``catalog:`` spec's CSV path."""
    from galmorph.data.synthetic import write_synthetic_catalog

    return write_synthetic_catalog(tmp_path_factory.mktemp("inference_syn"), 6, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, inference_catalog):
    """A run folder of a cnn2 trained for one epoch at 32 px: stands in for the default model."""
    import galmorph

    out = tmp_path_factory.mktemp("inference_model") / "tiny"
    galmorph.train(data=f"catalog:{inference_catalog}", model="cnn2", epochs=1, image_size=32,
                   out=out, progress=False, cache=False, threads=2)
    return out
