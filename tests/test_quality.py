"""``galaxymorph data check``: images to look at before training (unreadable, blank, nothing at
the centre) are listed with the file and the problem; good cutouts are not."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from galaxymorph.cli.main import main
from galaxymorph.data import open_dataset
from galaxymorph.data.quality import check_images
from galaxymorph.data.synthetic import write_synthetic_catalog


def _catalog_with_bad_images(tmp_path):
    csv_path = write_synthetic_catalog(tmp_path / "cat", 2, size=64, seed=0)
    images = csv_path.parent / "images"
    rng = np.random.default_rng(0)
    flat = 17 + (rng.random((64, 64, 3)) < 0.1)  # one value, but for a few pixels one count up
    Image.fromarray(flat.astype(np.uint8)).save(images / "blank.png")
    Image.fromarray(np.full((64, 64, 3), 17, np.uint8)).save(images / "flat.png")
    sky = rng.normal(30, 6, (64, 64, 3)).clip(0, 255).astype(np.uint8)  # sky, no galaxy
    Image.fromarray(sky).save(images / "sky.png")
    page = np.zeros((64, 64, 3), np.uint8)  # an error page: text at the top, black centre
    page[4:12, 4:60] = 230
    Image.fromarray(page).save(images / "page.png")
    (images / "cut.png").write_bytes((images / "syn_000000.png").read_bytes()[:200])
    with open(csv_path, "a", newline="") as fh:
        w = csv.writer(fh)
        for name in ("blank.png", "flat.png", "sky.png", "page.png", "cut.png"):
            w.writerow([name, 0, "Elliptical"])
    return csv_path


def test_check_lists_each_bad_image_with_its_problem_and_no_good_one(tmp_path):
    csv_path = _catalog_with_bad_images(tmp_path)
    ds = open_dataset(f"catalog:{csv_path}")
    report = check_images(ds)
    problems = {r["id"].split("/")[-1]: r["problem"] for r in report.flagged}
    # (the reader itself refuses a constant image: unreadable, with its reason)
    assert problems == {"blank.png": "blank", "flat.png": "unreadable", "sky.png": "no central source",
                        "page.png": "no central source", "cut.png": "unreadable"}
    details = {r["id"].split("/")[-1]: r["detail"] for r in report.flagged}
    assert "cut.png" in details["cut.png"] and "truncated" in details["cut.png"]
    assert "constant" in details["flat.png"]
    assert report.n == len(ds) and report.counts()["no central source"] == 2


def test_cli_check_writes_the_csv_and_json(tmp_path, capsys):
    csv_path = _catalog_with_bad_images(tmp_path)
    out = tmp_path / "flagged.csv"
    assert not main(["data", "check", f"catalog:{csv_path}", "--out", str(out)])
    text = capsys.readouterr().out
    assert "5 flagged" in text and "blank" in text and "Traceback" not in text
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["problem"] for r in rows].count("no central source") == 2
    assert set(rows[0]) == {"id", "location", "label", "problem", "detail"}
    assert not main(["data", "check", f"catalog:{csv_path}", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"unreadable": 2, "blank": 1, "no central source": 2}


def test_gz1_error_page_is_flagged(shared_data):
    """GZ1 holds an SDSS cutout-service error page labelled as a galaxy (docs/detector.md)."""
    from galaxymorph.data.quality import image_problem

    ds = open_dataset(shared_data / "gz1")
    i = next(k for k, name in enumerate(ds.ids) if name.endswith("587729387686002878.jpeg"))
    assert image_problem(ds.read(i)) is not None and image_problem(ds.read(i))[0] == "no central source"
    assert image_problem(ds.read(0)) is None
