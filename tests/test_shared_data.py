"""The real data in ../shared/data opens as its README describes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxymorph.cli.main import main
from galaxymorph.data import open_dataset
from galaxymorph.data.classes import GALAXY10_DECALS

GZ1_COUNTS = {"Elliptical": 3948, "Spiral_Clockwise": 352, "Spiral_AntiClockwise": 371,
              "Edge_on": 848, "Dont_know": 48, "Merger": 98}


def test_gz1_counts_match_its_readme(shared_data):
    ds = open_dataset(shared_data / "gz1")
    assert dict(zip(ds.class_names, ds.class_counts().tolist(), strict=True)) == GZ1_COUNTS
    assert ds.chiral_pairs == [(1, 2)]
    assert ds.read(0).shape == (423, 423, 3)


def test_gz1_4_label_map(shared_data):
    ds = open_dataset(f"catalog:{shared_data / 'gz1' / 'labels.csv'}", label_map="gz1-4")
    assert ds.class_names == ["Elliptical", "Spiral", "Edge-on", "Merger"]
    assert ds.class_counts().tolist() == [3948, 723, 848, 98]
    assert ds.chiral_pairs == []  # both windings merged: flips are safe


def test_galaxy10_sample_h5(shared_data):
    path = shared_data / "galaxy10_decals_sample" / "Galaxy10_DECals_sample.h5"
    ds = open_dataset(f"galaxy10-decals:{path}")
    assert ds.class_names == GALAXY10_DECALS
    assert ds.class_counts().tolist() == [11] * 10
    img = ds.read(len(ds) - 1)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and img.std() > 5


def test_galaxy10_sample_catalog_matches_h5_labels(shared_data):
    folder = shared_data / "galaxy10_decals_sample"
    cat = open_dataset(folder)  # the folder holds labels.csv: a catalog
    h5 = open_dataset(f"galaxy10-decals:{folder / 'Galaxy10_DECals_sample.h5'}")
    # Same classes; the CSV spells them with underscores (In_between_Round_Smooth).
    def norm(names: list[str]) -> list[str]:
        return [n.replace("_", " ").replace("-", " ").lower() for n in names]

    assert norm(cat.class_names) == norm(h5.class_names)
    assert sorted(cat.labels.tolist()) == sorted(h5.labels.tolist())


def test_ring_set_loads_as_catalog(shared_data):
    ds = open_dataset(f"catalog:{shared_data / 'gzdecals_ring' / 'labels.csv'}")
    assert sorted(ds.class_names) == ["not_ring", "ring"]
    assert ds.class_counts().tolist() == [235, 235]
    assert ds.read(0).shape == (424, 424, 3)


def test_cli_info_gz1_4_json(shared_data, capsys):
    # main returns on success; any error would raise SystemExit(2) here.
    main(["data", "info", str(shared_data / "gz1"), "--label-map", "gz1-4", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == 5617
    assert [(c["name"], c["count"]) for c in info["classes"]] == [
        ("Elliptical", 3948), ("Spiral", 723), ("Edge-on", 848), ("Merger", 98)]
    assert info["image_shape"] == [423, 423, 3]
    assert info["imbalance_ratio"] == pytest.approx(3948 / 98)
