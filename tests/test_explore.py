"""Dataset summaries and preview figures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from galaxymorph.data import open_dataset
from galaxymorph.data.explore import class_counts_plot, sample_grid, summarize
from galaxymorph.errors import ConfigError
from makedata import write_catalog


@pytest.fixture
def catalog(tmp_path):
    csv = write_catalog(tmp_path / "cat", ("Elliptical", "Spiral", "Merger"), per_class=4, size=24)
    # Make the classes imbalanced (4 / 4 / 1) and one Spiral unreadable.
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:10]) + "\n")
    (tmp_path / "cat" / "images" / "g1_0.png").write_bytes(b"garbage")
    return csv


def test_summarize(catalog):
    s = summarize(open_dataset(catalog))
    assert s["n"] == 9 and s["spec"] == str(catalog) and s["label_map"] is None
    assert s["image_shape"] == [24, 24, 3]
    assert [(c["label"], c["name"], c["count"]) for c in s["classes"]] == [
        (0, "Elliptical", 4), (1, "Spiral", 4), (2, "Merger", 1)]
    assert s["classes"][2]["fraction"] == pytest.approx(1 / 9)
    assert s["imbalance_ratio"] == 4.0


def test_summarize_skips_unreadable_first_image_and_ignores_empty_classes(tmp_path):
    csv = write_catalog(tmp_path, ("A", "B"), per_class=2, size=20)
    (tmp_path / "images" / "g0_0.png").write_bytes(b"")
    map_file = tmp_path / "m.yaml"
    map_file.write_text("classes: [A, B, C]\nmap: {0: A, 1: B}\n")
    s = summarize(open_dataset(csv, label_map=map_file))
    assert s["image_shape"] == [20, 20, 3]
    assert [c["count"] for c in s["classes"]] == [2, 2, 0]
    assert s["imbalance_ratio"] == 1.0  # the empty class C is not counted as infinitely rare
    assert s["label_map"] == "m"


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_sample_grid_writes_a_png_with_a_row_per_class(catalog, tmp_path):
    ds = open_dataset(catalog)
    small = sample_grid(ds, tmp_path / "a" / "grid.png", per_class=2, image_size=32)
    big = sample_grid(ds, tmp_path / "grid4.png", per_class=4, image_size=32)
    a, b = _png(small), _png(big)
    assert b.shape[1] > a.shape[1]  # more columns, wider figure
    assert a.shape[0] == b.shape[0]  # same number of rows (3 classes)
    assert a.std() > 10  # not a blank canvas
    assert not list((tmp_path / "a").glob(".grid.png.*"))  # no temporary left behind


def test_sample_grid_is_seeded(catalog, tmp_path):
    ds = open_dataset(catalog)
    p1 = _png(sample_grid(ds, tmp_path / "1.png", per_class=2, seed=0))
    p2 = _png(sample_grid(ds, tmp_path / "2.png", per_class=2, seed=0))
    np.testing.assert_array_equal(p1, p2)


def test_sample_grid_rejects_bad_view(catalog, tmp_path):
    ds = open_dataset(catalog)
    with pytest.raises(ConfigError, match="crop"):
        sample_grid(ds, tmp_path / "x.png", crop=2.0)
    with pytest.raises(ConfigError, match="per_class"):
        sample_grid(ds, tmp_path / "x.png", per_class=0)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("log", [False, True])
def test_class_counts_plot(catalog, tmp_path, log):
    out = class_counts_plot(open_dataset(catalog), tmp_path / f"counts_{log}.png", log=log)
    img = _png(out)
    assert img.shape[0] > 150 and img.std() > 10
