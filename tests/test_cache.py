"""The decode-once cache: bad images are reported and left out, and a cache is reused only
while its inputs are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from galaxymorph.data import open_dataset
from galaxymorph.data.cache import cache_key, decode_all
from galaxymorph.data.transforms import Preprocessing, prepare
from makedata import write_catalog


@pytest.fixture
def catalog_with_bad_image(tmp_path):
    csv = write_catalog(tmp_path / "cat", per_class=3, size=40)
    (tmp_path / "cat" / "images" / "g1_1.png").write_bytes(b"not a png at all")
    return csv


def test_decode_all_skips_and_reports_a_corrupt_image(catalog_with_bad_image, tmp_path):
    ds = open_dataset(catalog_with_bad_image)
    pre = Preprocessing(image_size=16)
    out = decode_all(ds, pre, cache=tmp_path / "cache", num_workers=0, progress=False)
    bad = ds.ids.index("images/g1_1.png")
    assert out.images.shape == (6, 3, 16, 16)
    assert out.ok.tolist() == [i != bad for i in range(6)]
    assert list(out.errors) == [bad] and "g1_1.png" in out.errors[bad]
    np.testing.assert_array_equal(out.images[0], prepare(ds.read(0), pre).numpy())
    assert (out.images[bad] == 0).all()


def test_cache_is_reused_on_the_second_call(catalog_with_bad_image, tmp_path, monkeypatch):
    ds = open_dataset(catalog_with_bad_image)
    pre = Preprocessing(image_size=16)
    first = decode_all(ds, pre, cache=tmp_path / "cache", num_workers=0, progress=False)

    def no_decoding(self, i):  # a cache hit must not decode a single image
        raise AssertionError("decoded again")

    monkeypatch.setattr(type(ds), "read", no_decoding)
    second = decode_all(ds, pre, cache=tmp_path / "cache", num_workers=0, progress=False)
    assert second.path == first.path
    np.testing.assert_array_equal(second.images, first.images)
    assert second.errors == first.errors and second.ok.tolist() == first.ok.tolist()


def test_default_cache_goes_under_galaxymorph_home(catalog_with_bad_image, tmp_home):
    ds = open_dataset(catalog_with_bad_image)
    out = decode_all(ds, Preprocessing(image_size=16), num_workers=0, progress=False)
    assert out.path is not None and out.path.is_relative_to(tmp_home / "cache")


def test_key_changes_with_preprocessing_files_and_subset(catalog_with_bad_image, tmp_path):
    ds = open_dataset(catalog_with_bad_image)
    base = cache_key(ds, Preprocessing(image_size=16))
    assert cache_key(ds, Preprocessing(image_size=16)) == base
    assert cache_key(ds, Preprocessing(image_size=32)) != base
    assert cache_key(ds, Preprocessing(image_size=16, crop=0.5)) != base
    auto = cache_key(ds, Preprocessing(image_size=16, framing="auto"))
    assert auto != base
    assert cache_key(ds, Preprocessing(image_size=16, framing="auto", frame_radii=2.0)) != auto
    assert cache_key(ds.subset([0, 1, 2]), Preprocessing(image_size=16)) != base
    # Replacing an image file (new size) changes the key without reading pixels.
    (catalog_with_bad_image.parent / "images" / "g1_1.png").write_bytes(b"still not a png, longer")
    assert cache_key(ds, Preprocessing(image_size=16)) != base


def test_new_preprocessing_builds_a_new_cache(catalog_with_bad_image, tmp_path):
    ds = open_dataset(catalog_with_bad_image)
    a = decode_all(ds, Preprocessing(image_size=16), cache=tmp_path / "c", num_workers=0,
                   progress=False)
    b = decode_all(ds, Preprocessing(image_size=24), cache=tmp_path / "c", num_workers=0,
                   progress=False)
    assert a.path != b.path and b.images.shape == (6, 3, 24, 24)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted([a.path.name, b.path.name])


def test_no_cache_keeps_everything_in_memory(catalog_with_bad_image, tmp_home):
    ds = open_dataset(catalog_with_bad_image)
    out = decode_all(ds, Preprocessing(image_size=16), cache=False, num_workers=0, progress=False)
    assert out.path is None and out.ok.sum() == 5
    assert not (tmp_home / "cache").exists()


def test_cache_list_clear_and_stale_parts(tmp_path, capsys):
    """`galaxymorph cache list|clear`; a part file of a dead build is removed, a live one kept."""
    import os
    import subprocess
    import sys

    from galaxymorph.cli.main import main
    from galaxymorph.data.cache import clear_caches, decode_all, list_caches, remove_stale_parts
    from galaxymorph.data.dataset import open_dataset
    from galaxymorph.data.transforms import Preprocessing
    from makedata import write_catalog

    root = tmp_path / "decoded"
    ds = open_dataset(f"catalog:{write_catalog(tmp_path / 'cat', per_class=3)}")
    for size in (16, 24):
        decode_all(ds, Preprocessing(size, 1.0), cache=root, num_workers=0, progress=False)
    entries = list_caches(root)
    assert len(entries) == 2 and all(e.images == 6 and e.bytes > 0 for e in entries)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = entries[0].path / f"images.{dead}.npy.part"
    live = entries[0].path / f"images.{os.getpid()}.npy.part"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert remove_stale_parts(root) == [stale] and live.exists()
    main(["cache", "list", "--dir", str(root)])
    out = capsys.readouterr().out
    assert entries[0].key in out and "2 caches" in out
    assert [e.key for e in clear_caches(root, keys=[entries[1].key])] == [entries[1].key]
    with pytest.raises(SystemExit) as info:
        main(["cache", "clear", "nosuchkey", "--dir", str(root)])
    assert info.value.code == 2
    main(["cache", "clear", "--dir", str(root)])
    assert list_caches(root) == []


def test_cache_lists_and_clears_the_shared_engine_graphs(tmp_home, capsys):
    """The built-in model's ONNX graphs live in the shared cache: `cache list` shows them and
    `cache clear --engines` removes them (and nothing else there)."""
    from galaxymorph.cli.main import main
    from galaxymorph.models.engine import shared_cache_dir, shared_graphs

    folder = shared_cache_dir()
    folder.mkdir(parents=True)
    for name in ("engine-abc.onnx", "engine-abc.json"):
        (folder / name).write_bytes(b"x" * 1000)
    other = folder / "notes.txt"
    other.write_text("not ours")
    assert [p.name for p in shared_graphs()] == ["engine-abc.json", "engine-abc.onnx"]
    main(["cache", "list"])
    assert "1 ONNX engine graphs" in capsys.readouterr().out
    main(["cache", "clear", "--engines"])
    assert "removed 1 engine graphs" in capsys.readouterr().out
    assert shared_graphs() == [] and other.exists()
