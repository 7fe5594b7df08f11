"""Similarity search: embeddings (engines, TTA, resume), index folders (duplicates, self, another
model, hostile files), the odd ranking and the CLI's one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from galaxymorph.errors import DataError, ModelError
from galaxymorph.inference import embed as embed_mod
from galaxymorph.inference.embed import DIM_KEY, HASH_KEY, embed
from galaxymorph.models.loading import load_classifier
from galaxymorph.search.build import add_to_index, build_index
from galaxymorph.search.index import SimilarityIndex, similar
from galaxymorph.search.odd import rank_odd, score_vectors
from test_predict import _cli as main_exit


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, inference_catalog):
    """The 24-image synthetic catalog plus a byte-identical copy of its first image (another
    name, same class) and a corrupt file."""
    root = tmp_path_factory.mktemp("similar_cat")
    shutil.copytree(inference_catalog.parent / "images", root / "images")
    df = pd.read_csv(inference_catalog)
    first = df.iloc[0]
    shutil.copy(root / "images" / first.filename, root / "images" / "twin.png")
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    extra = pd.DataFrame([{**first, "filename": "twin.png"},
                          {**first, "filename": "broken.png"}])
    pd.concat([df, extra]).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, tiny_model, catalog):
    out = tmp_path_factory.mktemp("similar_index") / "ix"
    build_index([f"catalog:{catalog}"], model=tiny_model, out=out, progress=False, workers=0)
    return out


def test_embeddings_are_unit_vectors_of_the_head_input_on_every_engine(tiny_model, tmp_home):
    onnx_clf = load_classifier(tiny_model, engine="onnx")
    torch_clf = load_classifier(tiny_model, engine="torch")
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    for tta in (False, True):
        (a, pa), (b, _) = onnx_clf.embed(x, tta), torch_clf.embed(x, tta)
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(pa, onnx_clf.predict_proba(x, tta), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    head = torch_clf.net.backbone.classifier[-1]  # cnn2's logits layer
    assert a.shape == (5, head.in_features)
    # With TTA the embedding does not depend on the galaxy's orientation; without, it does.
    turned = torch.rot90(x, 1, dims=(-2, -1))
    np.testing.assert_allclose(onnx_clf.embed(turned, True)[0], onnx_clf.embed(x, True)[0], atol=1e-5)
    assert not np.allclose(onnx_clf.embed(turned, False)[0], onnx_clf.embed(x, False)[0], atol=1e-3)


def test_embed_writes_rows_with_the_catalog_and_resumes(tiny_model, catalog, tmp_path, monkeypatch):
    out = tmp_path / "emb.parquet"
    real = embed_mod.EmbedTask.rows
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) after two batches
        return real(self, *args, **kwargs)

    monkeypatch.setattr(embed_mod.EmbedTask, "rows", failing)
    with pytest.raises(KeyboardInterrupt):
        embed([f"catalog:{catalog}"], model=tiny_model, out=out, batch_size=4, workers=0,
              progress=False)
    monkeypatch.undo()
    summary = embed([f"catalog:{catalog}"], model=tiny_model, out=out, batch_size=4, workers=0,
                    resume=True, progress=False)
    assert summary.skipped == 8 and summary.n_images == 18 and summary.n_errors == 1
    df = pd.read_parquet(out)
    assert list(df.columns) == ["path", "label", "label_name", "predicted_class", "embedding", "error"]
    assert len(df) == 26 and df["path"].is_unique
    whole = embed([f"catalog:{catalog}"], model=tiny_model, workers=0, progress=False)
    merged = df.merge(whole, on="path", suffixes=("", "_whole"))
    ok = merged["error"] == ""
    assert ok.sum() == 25 and "not a readable image" in merged.loc[~ok, "error"].iloc[0]
    assert merged.loc[~ok, "embedding"].isna().all()
    np.testing.assert_allclose(np.stack(merged.loc[ok, "embedding"]),
                               np.stack(merged.loc[ok, "embedding_whole"]), atol=1e-6)
    assert (merged["label_name"] == merged["label_name_whole"]).all()
    meta = pq.ParquetFile(out).schema_arrow.metadata
    clf = load_classifier(tiny_model)
    assert meta[HASH_KEY.encode()].decode() == clf.representation_hash()
    assert int(meta[DIM_KEY.encode()]) == len(merged["embedding"].iloc[0])
    # Resuming with another representation (here: another framing) would mix two models.
    with pytest.raises(DataError, match="cannot append"):
        embed([f"catalog:{catalog}"], model=tiny_model, out=out, resume=True, crop=0.5,
              progress=False)


def test_a_duplicate_is_the_nearest_and_a_query_is_never_its_own(index_dir, catalog, tmp_path):
    images = catalog.parent / "images"
    first = images / pd.read_csv(catalog).filename.iloc[0]
    out = tmp_path / "similar.csv"
    outside = tmp_path / "copy.png"
    shutil.copy(first, outside)
    assert main_exit(["similar", "--index", str(index_dir), "--k", "3", "--out", str(out),
                      "--workers", "0", str(first), str(outside), str(images / "broken.png")]) == 0
    df = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(df.columns) == ["query", "rank", "neighbour", "distance", "label", "label_name",
                                "predicted_class", "error"]
    inside = df[df["query"] == str(first)]
    assert list(inside["rank"]) == [1, 2, 3]
    assert str(first) not in set(inside["neighbour"])  # in the index, yet not its own neighbour
    assert inside["neighbour"].iloc[0] == str(images / "twin.png")
    assert inside["distance"].iloc[0] == pytest.approx(0, abs=1e-5)
    assert inside["distance"].is_monotonic_increasing
    assert inside["label_name"].iloc[0] == pd.read_csv(catalog).label_name.iloc[0]
    copy = df[df["query"] == str(outside)]  # not in the index: both twins come first
    assert set(copy["neighbour"].iloc[:2]) == {str(first), str(images / "twin.png")}
    broken = df[df["query"].str.endswith("broken.png")]
    assert len(broken) == 1 and broken["rank"].isna().all() and "not a readable image" in broken["error"].iloc[0]


def test_an_index_refuses_another_models_embeddings(index_dir, tiny_model, catalog, tmp_path, capsys):
    moved = tmp_path / "ix"
    shutil.copytree(index_dir, moved)
    other = tmp_path / "other"  # the same network with another framing: another representation
    shutil.copytree(tiny_model, other, ignore=shutil.ignore_patterns("engine-*"))
    card = json.loads((other / "model_card.json").read_text())
    card["crop"], card["name"] = 0.5, "cropped"
    (other / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"built with model .*tiny.* not with 'cropped'"):
        add_to_index(moved, [str(catalog.parent / "images" / "twin.png")], model=other, progress=False)
    before = (moved / "embeddings.parquet").read_bytes()
    assert main_exit(["similar", "--index", str(moved), "--model", str(other), "--out",
                      str(tmp_path / "s.csv"), str(catalog.parent / "images" / "twin.png")]) == 2
    err = capsys.readouterr().err
    assert "not with 'cropped'" in err and "Traceback" not in err
    assert (moved / "embeddings.parquet").read_bytes() == before  # nothing was added


def test_adding_images_extends_the_index(index_dir, tiny_model, tmp_path):
    from PIL import Image

    from makedata import galaxy_image

    moved = tmp_path / "ix"
    shutil.copytree(index_dir, moved)
    new = tmp_path / "new"
    new.mkdir()
    for i in range(3):
        Image.fromarray(galaxy_image(2, 48, seed=i)).save(new / f"n{i}.png")
    summary = add_to_index(moved, [str(new)], progress=False)
    assert summary.meta.count == 28 and summary.embedded.n_images == 3
    again = add_to_index(moved, [str(new)], progress=False)  # already in: nothing new
    assert again.meta.count == 28 and again.embedded.skipped == 3
    ix = SimilarityIndex.open(moved)
    found = similar(ix, [str(new / "n0.png")], k=2, progress=False)
    assert ix.meta.count == 28 and str(new / "n0.png") not in set(found["neighbour"])


@pytest.fixture
def one_faiss_thread():
    """FAISS on one thread: on a busy machine its OpenMP threads spin-wait for each other (a
    40x slower k-means on the shared CI cores); the figures do not depend on it."""
    import faiss

    faiss.omp_set_num_threads(1)
    yield
    import os

    faiss.omp_set_num_threads(os.cpu_count() or 1)


def test_the_approximate_index_finds_what_exact_search_finds(tmp_path, one_faiss_thread):
    """The ivf kind (PCA, inverted lists, 8-bit codes, re-ranked in full) through its files."""
    from galaxymorph.search import ann
    from galaxymorph.search.store import IndexMeta, read_faiss, write_index

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 64))
    x = (centres[rng.integers(0, 20, 3000)] + rng.normal(0, 0.3, (3000, 64))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    params = ann.ivf_params(len(x), 64)
    index = ann.new_index("ivf", 64, params)
    ann.train(index, x[:ann.train_size(len(x), params)])
    index.add(x)
    meta = IndexMeta(model={"ref": "m", "name": "m", "record": {}, "hash": "0" * 64}, dim=64,
                     count=len(x), rows=len(x), kind="ivf", params=params)
    write_index(tmp_path, index, meta)
    again = read_faiss(tmp_path, IndexMeta.from_dict(json.loads((tmp_path / "index.json").read_text()),
                                                     tmp_path / "index.json"))
    exact = ann.new_index("flat", 64)
    exact.add(x)
    queries = np.arange(0, 3000, 30)
    want_ids, want_d = ann.search(exact, x[queries], 10, exclude=queries)
    got_ids, got_d = ann.search(again, x[queries], 10, exclude=queries)
    assert not (got_ids == queries[:, None]).any()  # each query left out of its own neighbours
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got_ids, want_ids, strict=True)])
    assert recall >= 0.9
    np.testing.assert_allclose(got_d[:, 0], want_d[:, 0], atol=0.01)  # 1 - cosine, both kinds


def _hostile_faiss(folder, blob: bytes) -> None:
    """Replace the index file and make index.json agree with it (an attacker controls both)."""
    import hashlib

    (folder / "index.faiss").write_bytes(blob)
    meta = json.loads((folder / "index.json").read_text())
    meta["index_sha256"], meta["index_bytes"] = hashlib.sha256(blob).hexdigest(), len(blob)
    (folder / "index.json").write_text(json.dumps(meta))


def _other_dim_index(folder) -> None:
    import faiss

    small = faiss.IndexFlatIP(4)
    small.add(np.eye(4, dtype=np.float32))
    _hostile_faiss(folder, faiss.serialize_index(small).tobytes())


def _edit_meta(folder, **fields) -> None:
    meta = json.loads((folder / "index.json").read_text())
    meta.update(fields)
    (folder / "index.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "index.faiss").write_bytes((f / "index.faiss").read_bytes()[:-100]), "cut short"),
    (lambda f: (f / "index.faiss").write_bytes(b"IxFI" + bytes(range(256)) * 8), "bytes, index.json says"),
    (lambda f: _hostile_faiss(f, b"IxFI" + b"\xff" * 64), "not a readable FAISS index"),
    (lambda f: _hostile_faiss(f, b"\x80\x04pickle" + b"\x00" * 64), "not a FAISS flat index"),
    (_other_dim_index, "holds IndexFlatIP of 4 x 4, index.json says flat of 25 x"),
    (lambda f: (f / "index.json").write_text("{not json"), "not readable JSON"),
    (lambda f: _edit_meta(f, dim="1280"), "'dim' is not an integer"),
    (lambda f: _edit_meta(f, model={"ref": "default"}), "'model' needs"),
    (lambda f: _edit_meta(f, rows=1, count=1), "has 26 rows, index.json says 1"),
    (lambda f: (f / "index.json").unlink(), "not a finished index"),
    (lambda f: (f / "embeddings.parquet").write_bytes(b"PAR1 not really"), "not a readable Parquet"),
])
def test_a_hostile_or_corrupt_index_is_one_clear_error(index_dir, tmp_path, capsys, damage, message):
    folder = tmp_path / "ix"
    shutil.copytree(index_dir, folder)
    damage(folder)
    with pytest.raises(DataError, match=message):
        SimilarityIndex.open(folder)
    assert main_exit(["index", "odd", "--index", str(folder), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(folder) in err and "Traceback" not in err


def test_the_odd_ranking_puts_a_planted_outlier_first(tiny_model, tmp_path):
    from PIL import Image

    from makedata import galaxy_image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):  # one kind of galaxy, its noise differing
        Image.fromarray(galaxy_image(0, 48, seed=i)).save(images / f"round{i:02d}.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(images / "planted.png")
    out = tmp_path / "index"
    build_index([str(images)], model=tiny_model, out=out, progress=False, workers=0)
    for method in ("knn", "gmm"):
        ranked = rank_odd(out, method=method, k=3)
        assert ranked["path"].iloc[0].endswith("planted.png"), method
        assert list(ranked["rank"]) == list(range(1, 14)) and ranked["score"].is_monotonic_decreasing
    # The same on vectors: a cluster and one far point.
    cluster = rng.normal(0, 0.05, (40, 16)) + np.eye(16)[0]
    vectors = np.vstack([cluster, np.eye(16)[5]]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for method in ("knn", "gmm"):
        assert np.argmax(score_vectors(vectors, method, k=5)) == 40, method


def test_cli_index_build_odd_and_map(tiny_model, catalog, tmp_path):
    out = tmp_path / "ix"
    args = ["index", "build", "--model", str(tiny_model), "--out", str(out), "--no-progress",
            "--workers", "0", f"catalog:{catalog}"]
    assert main_exit(args) == 0
    assert main_exit(args) == 2  # an index is there: not silently replaced
    assert main_exit(["index", "odd", "--index", str(out), "--out", str(tmp_path / "odd.csv")]) == 0
    odd = pd.read_csv(tmp_path / "odd.csv")
    assert len(odd) == 25 and list(odd.columns[:3]) == ["rank", "path", "score"]
    assert "label_name" in odd.columns
    png = tmp_path / "map.png"
    assert main_exit(["index", "map", "--index", str(out), "--out", str(png), "--projection",
                      "pca", "--grid", "3", "--coords", str(tmp_path / "xy.csv")]) == 0
    from PIL import Image

    assert Image.open(png).size[0] > 1000
    xy = pd.read_csv(tmp_path / "xy.csv")
    assert len(xy) == 25 and {"x", "y", "label_name"} <= set(xy.columns)
