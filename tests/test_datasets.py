"""Dataset specs, catalogs, HDF5 files and label maps: what opens, and what is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from galaxymorph.data import open_dataset
from galaxymorph.data.classes import GALAXY10_DECALS, chiral_pairs
from galaxymorph.data.label_maps import load_label_map
from galaxymorph.errors import ConfigError, DataError, ImageReadError
from makedata import galaxy_image, write_catalog, write_h5

GZ1_NAMES = ["Elliptical", "Spiral_Clockwise", "Spiral_AntiClockwise", "Edge_on", "Dont_know",
             "Merger"]


# -- catalogs ---------------------------------------------------------------------------------


def test_catalog_resolves_images_subfolder_and_keeps_extra_columns(tmp_path):
    csv = write_catalog(tmp_path, ("Elliptical", "Spiral", "Edge-on"), per_class=3, extra=True)
    ds = open_dataset(f"catalog:{csv}")
    assert len(ds) == 9
    assert ds.class_names == ["Elliptical", "Spiral", "Edge-on"]
    assert ds.class_counts().tolist() == [3, 3, 3]
    assert ds.location(0) == str(tmp_path / "images" / "g0_0.png")
    assert ds.ids[0] == "images/g0_0.png"
    np.testing.assert_array_equal(ds.read(4), galaxy_image(1, 32, seed=1))
    assert ds.source.metadata.iloc[ds.indices[4]].to_dict() == pytest.approx({"ra": 11.1, "dec": -6.0})
    # A bare folder holding labels.csv and the bare .csv path mean the same catalog.
    assert open_dataset(tmp_path).ids == ds.ids == open_dataset(csv).ids


def test_catalog_filenames_relative_to_the_csv_win_over_images_folder(tmp_path):
    write_catalog(tmp_path, per_class=2, subdir="")
    ds = open_dataset(tmp_path / "labels.csv")
    assert ds.location(0) == str(tmp_path / "g0_0.png")
    assert ds.read(0).shape == (32, 32, 3)


def test_catalog_missing_columns(tmp_path):
    (tmp_path / "bad.csv").write_text("file,class\na.png,1\n")
    with pytest.raises(DataError, match=r"bad.csv: catalog lacks column\(s\) filename, label; it has file, class"):
        open_dataset(f"catalog:{tmp_path / 'bad.csv'}")


@pytest.mark.parametrize("value", ["spiral", "1.5"])
def test_catalog_non_integer_labels_name_the_line(tmp_path, value):
    (tmp_path / "x.csv").write_text(f"filename,label\na.png,0\nb.png,{value}\n")
    with pytest.raises(DataError, match=rf"x.csv: column 'label' must hold integers.*line 3 has '{value}'"):
        open_dataset(tmp_path / "x.csv")


def test_catalog_negative_and_empty_labels_and_filenames(tmp_path):
    (tmp_path / "neg.csv").write_text("filename,label\na.png,0\nb.png,-1\n")
    with pytest.raises(DataError, match="negative labels"):
        open_dataset(tmp_path / "neg.csv")
    (tmp_path / "hole.csv").write_text("filename,label\na.png,0\nb.png,\n")
    with pytest.raises(DataError, match=r"empty label on line\(s\) \[3\]"):
        open_dataset(tmp_path / "hole.csv")
    (tmp_path / "noname.csv").write_text("filename,label\n,0\nb.png,1\n")
    with pytest.raises(DataError, match=r"empty filename on line\(s\) \[2\]"):
        open_dataset(tmp_path / "noname.csv")


def test_catalog_listing_a_missing_image_fails_on_read_not_open(tmp_path):
    csv = write_catalog(tmp_path, per_class=1)
    with csv.open("a") as f:
        f.write("gone.png,1,Spiral\n")
    ds = open_dataset(csv)
    assert len(ds) == 3
    with pytest.raises(ImageReadError, match=r"gone.png: file not found"):
        ds.read(2)


# -- folder specs and unknown specs -----------------------------------------------------------


def test_sample_card_is_found_however_the_set_is_named_and_checked(tmp_path):
    import json

    from galaxymorph.data.provenance import SAMPLE_CARD, read_sample_card

    csv = write_catalog(tmp_path, per_class=2)
    assert read_sample_card(open_dataset(csv)) is None  # not a generated set
    card = {"generator": "/runs/gan", "seed": 3, "source_crop": 0.5,
            "generator_split": {"fold": "train", "file": "split.json", "ids_sha256": "ab"}}
    (tmp_path / SAMPLE_CARD).write_text(json.dumps(card))
    for spec in (f"catalog:{csv}", str(csv), str(tmp_path)):
        assert read_sample_card(open_dataset(spec)) == card
    for bad in ("[1, 2]", "{not json", json.dumps({**card, "seed": "3"}),
                json.dumps({**card, "source_crop": 2.0}), json.dumps({**card, "generator_split": "x"})):
        (tmp_path / SAMPLE_CARD).write_text(bad)
        assert read_sample_card(open_dataset(csv)) is None  # malformed: ignored, with a warning


@pytest.mark.parametrize("spec, kind, arg", [
    ("catalog:a/labels.csv", "catalog", "a/labels.csv"), ("folder:imgs", "folder", "imgs"),
    ("galaxy10-decals", "galaxy10-decals", None), ("galaxy10-sdss:G.h5", "galaxy10-sdss", "G.h5"),
    ("h5:x.h5", "h5", "x.h5"), ("runs/a:b.csv", "path", "runs/a:b.csv"),
    ("C:/data/labels.csv", "path", "C:/data/labels.csv"), ("gz1/labels.csv", "path", "gz1/labels.csv"),
])
def test_one_spec_grammar(spec, kind, arg):
    from galaxymorph.data.specs import names_a_kind, split_spec

    assert split_spec(spec) == (kind, arg)
    assert names_a_kind(spec) == (kind != "path")


def test_folder_spec_one_class_per_subfolder(tmp_path):
    from PIL import Image

    for name, n in (("ring", 2), ("not_ring", 3)):
        (tmp_path / name).mkdir()
        for k in range(n):
            Image.fromarray(galaxy_image(k, 16)).save(tmp_path / name / f"{k}.jpg")
    (tmp_path / "ring" / "notes.txt").write_text("not an image")
    ds = open_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ["not_ring", "ring"]  # sorted, so labels are stable
    assert ds.class_counts().tolist() == [3, 2]
    assert open_dataset(tmp_path).ids == ds.ids


@pytest.mark.parametrize("spec", ["nosuch:thing", "/definitely/not/here.csv", "catalog:",
                                  "folder:/definitely/not/here"])
def test_unknown_or_missing_specs_are_data_errors(spec):
    with pytest.raises(DataError, match=r"not found|unknown dataset spec|needs"):
        open_dataset(spec)


def test_bare_known_name_looks_in_the_cache_folder(tmp_home):
    with pytest.raises(DataError, match=r"Galaxy10_DECals.h5: HDF5 file not found") as err:
        open_dataset("galaxy10-decals")
    assert str(tmp_home) in str(err.value)
    assert "galaxymorph data download galaxy10-decals" in str(err.value)


# -- HDF5 (Galaxy10 layout) -------------------------------------------------------------------


def test_h5_ok_with_galaxy10_decals_classes(tmp_path):
    path = write_h5(tmp_path / "g10.h5", per_class=2, size=16)
    ds = open_dataset(f"galaxy10-decals:{path}")
    assert len(ds) == 20
    assert ds.class_names == GALAXY10_DECALS
    assert ds.class_counts().tolist() == [2] * 10
    img = ds.read(5)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, galaxy_image(2, 16, seed=5))
    assert ds.location(5).endswith("g10.h5#5") and ds.ids[5] == "g10.h5#5"
    assert open_dataset(path).ids == ds.ids  # a bare .h5 path is Galaxy10 DECaLS too


def test_h5_without_ans(tmp_path):
    path = write_h5(tmp_path / "noans.h5", with_ans=False)
    with pytest.raises(DataError, match=r"noans.h5: HDF5 file has no dataset 'ans' \(found: images\)"):
        open_dataset(f"h5:{path}")


def test_h5_with_wrong_image_shape(tmp_path):
    path = write_h5(tmp_path / "grey.h5", images_shape=(20, 16, 16))
    with pytest.raises(DataError, match=r"grey.h5: 'images' has shape \(20, 16, 16\), expected"):
        open_dataset(path)


def test_h5_rows_disagreeing_with_labels(tmp_path):
    path = write_h5(tmp_path / "rows.h5", images_shape=(7, 16, 16, 3))
    with pytest.raises(DataError, match="'images' has 7 rows but 'ans' has 20"):
        open_dataset(path)


def test_h5_labels_outside_the_classes(tmp_path):
    path = write_h5(tmp_path / "eleven.h5", n_classes=11, per_class=1)
    with pytest.raises(DataError, match=r"labels span 0..10, outside the 10 classes"):
        open_dataset(f"galaxy10-decals:{path}")


def test_truncated_h5_names_the_file(tmp_path):
    full = write_h5(tmp_path / "full.h5", per_class=3, size=32)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 9 // 10])  # an interrupted copy
    with pytest.raises(DataError, match=r"cut.h5: not a readable HDF5 file, or truncated"):
        open_dataset(f"galaxy10-decals:{cut}")


def test_not_an_h5_file(tmp_path):
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataError, match=r"text.h5: not a readable HDF5 file"):
        open_dataset(tmp_path / "text.h5")


# -- label maps -------------------------------------------------------------------------------


@pytest.fixture
def gz1_like(tmp_path):
    """A catalog with GZ1's six raw classes, 2 images each."""
    return write_catalog(tmp_path / "gz1", GZ1_NAMES, per_class=2, size=16)


def test_builtin_gz1_4_merges_spirals_and_drops_dont_know(gz1_like):
    raw = open_dataset(gz1_like)
    ds = open_dataset(gz1_like, label_map="gz1-4")
    assert ds.class_names == ["Elliptical", "Spiral", "Edge-on", "Merger"]
    assert ds.class_counts().tolist() == [2, 4, 2, 2]
    assert len(ds) == 10 and not any("g4_" in i for i in ds.ids)
    assert raw.chiral_pairs == [(1, 2)] and ds.chiral_pairs == []
    # Same files in the same order, with the two Dont_know images (raw 8, 9) left out.
    assert ds.ids == raw.ids[:8] + raw.ids[10:]
    np.testing.assert_array_equal(ds.read(8), raw.read(10))


def test_label_map_from_yaml_by_name_and_number(gz1_like, tmp_path):
    path = tmp_path / "smooth.yaml"
    path.write_text("name: smooth-vs-disk\nclasses: [smooth, disk]\n"
                    "map: {Elliptical: smooth, 1: disk, 2: disk, Edge_on: disk, 4: null, 5: null}\n")
    ds = open_dataset(gz1_like, label_map=str(path))
    assert ds.label_map.name == "smooth-vs-disk"
    assert ds.class_names == ["smooth", "disk"]
    assert ds.class_counts().tolist() == [2, 6]


def test_label_map_json(gz1_like, tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"classes": ["a"], "map": {"0": "a", "1": null, "2": null, "3": null, '
                    '"4": null, "5": null}}')
    ds = open_dataset(gz1_like, label_map=path)
    assert ds.label_map.name == "m" and len(ds) == 2


def test_label_map_leaving_a_raw_label_unmapped(gz1_like, tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("classes: [E, S]\nmap: {0: E, 1: S, 2: S, 3: S, 5: S}\n")
    with pytest.raises(DataError, match=r"does not say what to do with raw label\(s\) \[4\] \(Dont_know\)"):
        open_dataset(gz1_like, label_map=path)


def test_label_map_naming_labels_the_data_lacks(gz1_like, tmp_path):
    beyond = tmp_path / "beyond.yaml"
    beyond.write_text("classes: [E]\nmap: {0: E, 1: E, 2: E, 3: E, 4: E, 5: E, 9: E}\n")
    with pytest.raises(DataError, match="names raw label 9, but the data has 6 classes"):
        open_dataset(gz1_like, label_map=beyond)
    unknown_name = tmp_path / "name.yaml"
    unknown_name.write_text("classes: [E]\nmap: {Lenticular: E}\n")
    with pytest.raises(DataError, match="names class 'Lenticular', which the data does not have"):
        open_dataset(gz1_like, label_map=unknown_name)
    bad_target = tmp_path / "target.yaml"
    bad_target.write_text("classes: [E]\nmap: {0: Spiral}\n")
    with pytest.raises(ConfigError, match="target 'Spiral' is not one of its classes"):
        open_dataset(gz1_like, label_map=bad_target)


def test_label_map_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown label map 'nope'"):
        load_label_map("nope")
    (tmp_path / "list.yaml").write_text("classes: [a]\nmap: [a, b]\n")
    with pytest.raises(ConfigError, match=r"list.yaml: a label map needs 'classes'"):
        load_label_map(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("classes: [a\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: cannot parse label map"):
        load_label_map(tmp_path / "broken.yaml")


# -- ids, subsets, chirality -------------------------------------------------------------------


def test_select_ids_recreates_a_subset_in_order(tmp_path):
    ds = open_dataset(write_catalog(tmp_path, per_class=3))
    wanted = [ds.ids[4], ds.ids[0]]
    sub = ds.select_ids(wanted)
    assert sub.ids == wanted
    assert sub.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(sub.read(0), ds.read(4))
    with pytest.raises(DataError, match=r"1 id\(s\) of the saved split are not in this dataset \(first: nope.png\)"):
        ds.select_ids([ds.ids[0], "nope.png"])


@pytest.mark.parametrize(("names", "pairs"), [
    (GZ1_NAMES, [(1, 2)]),
    (["Clockwise spiral", "Anti-clockwise spiral", "Elliptical"], [(0, 1)]),
    (["S_counterclockwise", "E", "S_clockwise"], [(2, 0)]),
    (["Spiral", "Elliptical"], []),
    (["Anticlockwise"], []),  # no twin: nothing to swap with
])
def test_chiral_pairs_detection(names, pairs):
    assert chiral_pairs(names) == pairs
