"""Predict keeps what a labelled input knows: the true label and the source's metadata columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import galaxymorph
from galaxymorph.errors import DataError

#: The catalog's extra columns: numbers, text, an integer id, and one named like a prediction
#: column (kept as meta_probability).
EXTRA = ["ra", "dec", "objid", "survey", "probability"]


@pytest.fixture(scope="module")
def meta_catalog(tmp_path_factory, inference_catalog):
    """A catalog of 10 images (the last one corrupt) with extra columns, and its frame."""
    root = tmp_path_factory.mktemp("meta_cat")
    images = sorted((inference_catalog.parent / "images").glob("*.png"))[:9]
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    labels = pd.read_csv(inference_catalog).set_index("filename")
    rows = []
    for i, p in enumerate([*images, root / "broken.png"]):
        name = f"images/{p.name}"
        lab = int(labels.loc[name, "label"]) if name in labels.index else 0
        rows.append({"filename": str(p), "label": lab, "label_name": f"cls{lab}",
                     "ra": 150.0 + i / 7, "dec": -2.5 + i / 3, "objid": 587722981741363200 + i,
                     "survey": "sdss" if i % 2 else "decals", "probability": i / 10})
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "cat.csv", index=False, float_format="%.17g")
    frame.iloc[:4].to_csv(root / "first4.csv", index=False, float_format="%.17g")
    return root / "cat.csv", frame


def _read(path) -> pd.DataFrame:
    suffix = path.suffix
    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    if suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.read_parquet(path)


def _check_rows(df: pd.DataFrame, frame: pd.DataFrame) -> None:
    """Every catalog row's label, name and extra columns, on the row of its file."""
    by_path = df.set_index("path")
    for _, want in frame.iterrows():
        got = by_path.loc[want["filename"]]
        assert int(got["true_label"]) == want["label"]
        assert got["true_label_name"] == want["label_name"]
        assert got["ra"] == pytest.approx(want["ra"], abs=1e-12)
        assert got["dec"] == pytest.approx(want["dec"], abs=1e-12)
        assert int(got["objid"]) == want["objid"]  # a 64-bit id, not rounded through a float
        assert got["survey"] == want["survey"]
        assert got["meta_probability"] == pytest.approx(want["probability"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_catalog_columns_are_kept_per_row(tiny_model, meta_catalog, tmp_path, suffix):
    csv, frame = meta_catalog
    out = tmp_path / f"preds{suffix}"
    galaxymorph.predict(f"catalog:{csv}", model=tiny_model, out=out, batch_size=3, workers=1,
                        progress=False)
    df = _read(out)
    assert list(df.columns[-7:]) == ["true_label", "true_label_name", "ra", "dec", "objid",
                                     "survey", "meta_probability"]
    assert df.columns[0] == "path" and "probability" in df.columns  # the prediction's own
    assert len(df) == len(frame)
    _check_rows(df, frame)
    broken = df[df["path"].str.endswith("broken.png")].iloc[0]
    assert broken["error"] and broken["survey"] == frame["survey"].iloc[-1]  # kept for errors too


def test_parquet_columns_are_typed(tiny_model, meta_catalog, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "preds.parquet"
    galaxymorph.predict(f"catalog:{meta_catalog[0]}", model=tiny_model, out=out, progress=False)
    schema = pq.read_schema(out)
    assert {n: str(schema.field(n).type) for n in ("true_label", "true_label_name", "ra", "objid",
                                                   "survey")} == \
        {"true_label": "int64", "true_label_name": "string", "ra": "double", "objid": "int64",
         "survey": "string"}


def test_dataframe_api_and_mixed_inputs(tiny_model, meta_catalog, inference_catalog):
    """A run mixing a catalog and a plain file has one schema; the plain row leaves it empty."""
    csv, frame = meta_catalog
    plain = sorted((inference_catalog.parent / "images").glob("*.png"))[10]
    df = galaxymorph.predict([str(plain), f"catalog:{csv}"], model=tiny_model, progress=False)
    assert str(df["true_label"].dtype) == "Int64"
    _check_rows(df.iloc[1:], frame)
    first = df.iloc[0]
    assert first["path"] == str(plain) and first["error"] == ""
    assert pd.isna(first["true_label"]) and pd.isna(first["ra"]) and pd.isna(first["survey"])


def test_h5_metadata_columns(tiny_model, tmp_path):
    import h5py

    from galaxymorph.data.synthetic import write_synthetic_h5

    h5 = write_synthetic_h5(tmp_path / "g10.h5", 2, size=64, seed=3)
    out = tmp_path / "preds.csv"
    galaxymorph.predict(f"galaxy10-decals:{h5}", model=tiny_model, out=out, progress=False)
    df = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(df.columns[-6:]) == ["true_label", "true_label_name", "ra", "dec", "redshift",
                                     "pxscale"]
    from galaxymorph.data.registry import KNOWN

    names = KNOWN["galaxy10-decals"].class_names
    with h5py.File(h5) as f:
        for _, row in df.iterrows():
            i = int(row["path"].rpartition("#")[2])
            assert row["true_label"] == f["ans"][i] and row["true_label_name"] == names[f["ans"][i]]
            for key in ("ra", "dec", "redshift", "pxscale"):
                assert row[key] == pytest.approx(float(f[key][i]), rel=1e-15)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_resume_keeps_the_schema(tiny_model, meta_catalog, tmp_path, suffix):
    csv, frame = meta_catalog
    out = tmp_path / f"preds{suffix}"
    galaxymorph.predict(f"catalog:{csv.parent / 'first4.csv'}", model=tiny_model, out=out,
                        progress=False)
    summary = galaxymorph.predict(f"catalog:{csv}", model=tiny_model, out=out, resume=True,
                                  progress=False)
    assert summary.skipped == 4 and summary.n_images == len(frame) - 4
    df = _read(out)
    assert len(df) == len(df["path"].unique()) == len(frame)
    _check_rows(df, frame)


def test_resume_with_other_columns_is_refused(tiny_model, meta_catalog, inference_catalog,
                                              tmp_path):
    """Appending rows of another schema would make a file nobody can read back: refused."""
    plain = [str(p) for p in sorted((inference_catalog.parent / "images").glob("*.png"))[:2]]
    for suffix in (".csv", ".jsonl", ".json", ".parquet"):
        out = tmp_path / f"plain{suffix}"
        galaxymorph.predict(plain[:1], model=tiny_model, out=out, progress=False)
        with pytest.raises(DataError, match=r"cannot append: its columns .* differ from this run's"):
            galaxymorph.predict([*plain, f"catalog:{meta_catalog[0]}"], model=tiny_model, out=out,
                                resume=True, progress=False)


def test_plain_folder_has_no_source_columns(tiny_model, inference_catalog):
    folder = inference_catalog.parent / "images"
    df = galaxymorph.predict(str(folder / "*.png"), model=tiny_model, progress=False)
    assert not {"true_label", "true_label_name"} & set(df.columns)
    assert df.columns[-1] == "error"
