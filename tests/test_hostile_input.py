"""A hostile-input corpus, generated here: each file gets one clear error and bounded memory.

Cube and header-only FITS bombs, HDF5 files that declare huge shapes, ``/dev/zero`` and a named
pipe in a catalog, tampered model cards, bad label maps, garbage images. Memory is measured with
``tracemalloc`` (numpy reports its buffers to it), so "refused from the header" is checked, not
assumed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from galaxymorph.data.imageio import decode_image, read_image
from galaxymorph.errors import ConfigError, DataError, ImageReadError, ModelError

#: What refusing a file may cost: headers and bookkeeping, never the declared payload.
MEMORY_BOUND = 32 << 20


@contextmanager
def bounded(seconds: int = 20, memory: int = MEMORY_BOUND):
    """Fail if the block allocates more than ``memory`` bytes at peak or runs over ``seconds``
    (a hang on a pipe would otherwise stall the suite)."""

    def _timeout(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert peak < memory, f"peak allocation {peak / 1e6:.0f} MB"


def _fits_header_only(shape: tuple[int, ...], bitpix: int = -64) -> bytes:
    """A FITS file whose header declares ``shape`` (FITS order reversed) but holds one block:
    what an attacker needs to make a naive reader allocate the declared size."""
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = bitpix
    header["NAXIS"] = len(shape)
    for i, n in enumerate(reversed(shape), start=1):
        header[f"NAXIS{i}"] = n
    return header.tostring().encode() + b"\0" * 2880


def _fits_bytes(hdu) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    hdul = hdu if isinstance(hdu, fits.HDUList) else fits.HDUList([fits.PrimaryHDU(), hdu]) \
        if isinstance(hdu, fits.CompImageHDU) else fits.HDUList([hdu])
    hdul.writeto(buf)
    return buf.getvalue()


# -- FITS --------------------------------------------------------------------------------------

def test_declared_fits_cube_is_refused_from_the_header():
    data = _fits_header_only((100, 1000, 1000))  # 800 MB of float64 declared, 8 KB stored
    with bounded(), pytest.raises(ImageReadError, match=r"cube.fits: FITS data of shape \(100, 1000, 1000\)"):
        decode_image(data, "cube.fits")


def test_fits_total_pixels_count_every_plane():
    # Three planes of 700x700: each plane under the limit, the whole over it.
    data = _fits_header_only((3, 700, 700), bitpix=8)
    with bounded(), pytest.raises(ImageReadError, match="larger than 1,000,000 pixels"):
        decode_image(data, "rgb.fits", max_pixels=1_000_000)


def test_tile_compressed_cube_is_refused_before_expansion():
    from astropy.io import fits

    cube = fits.CompImageHDU(np.zeros((20, 64, 64), dtype=np.int16))
    with bounded(), pytest.raises(ImageReadError, match="expected one band or three"):
        decode_image(_fits_bytes(cube), "cube.fz")


def test_all_nan_fits_is_refused_not_classified():
    from astropy.io import fits

    data = _fits_bytes(fits.PrimaryHDU(np.full((32, 32), np.nan, dtype=np.float32)))
    with pytest.raises(ImageReadError, match=r"nan\.fits: FITS image has no finite pixel"):
        decode_image(data, "nan.fits")


def test_tiny_image_is_refused_not_classified():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(buf, format="PNG")
    with pytest.raises(ImageReadError, match=r"dot.png: image is 1x1 pixels, too small to classify"):
        decode_image(buf.getvalue(), "dot.png")


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_constant_images_are_refused_not_classified():
    from astropy.io import fits

    zeros = _fits_bytes(fits.PrimaryHDU(np.zeros((32, 32), dtype=np.float32)))
    with pytest.raises(ImageReadError, match=r"zero\.fits: constant image: nothing to classify"):
        decode_image(zeros, "zero.fits")
    # NaN everywhere but one pixel of 0: constant once the NaNs are cleaned.
    cleaned = np.full((32, 32), np.nan, dtype=np.float32)
    cleaned[3, 5] = 0.0
    with pytest.raises(ImageReadError, match="constant image"):
        decode_image(_fits_bytes(fits.PrimaryHDU(cleaned)), "cleaned.fits")
    solid = np.full((40, 30, 3), (200, 10, 10), dtype=np.uint8)
    with pytest.raises(ImageReadError, match=r"constant image: .*every pixel is 200, 10, 10"):
        decode_image(_png_bytes(solid), "red.png")


def test_an_image_with_one_different_pixel_is_classified():
    """The check is exact: one pixel away from the centre and corner is enough to be an image."""
    almost = np.zeros((40, 30, 3), dtype=np.uint8)
    almost[37, 2] = (0, 0, 1)
    assert decode_image(_png_bytes(almost), "almost.png").shape == (40, 30, 3)


def test_predict_marks_constant_and_tiny_images_per_row(tiny_model, inference_catalog, tmp_path):
    import pandas as pd

    import galaxymorph

    folder = tmp_path / "in"
    folder.mkdir()
    good = next((inference_catalog.parent / "images").glob("*.png"))
    (folder / "good.png").write_bytes(good.read_bytes())
    (folder / "black.png").write_bytes(_png_bytes(np.zeros((64, 64, 3), dtype=np.uint8)))
    (folder / "dot.png").write_bytes(_png_bytes(np.full((1, 1, 3), 90, dtype=np.uint8)))
    out = tmp_path / "preds.csv"
    summary = galaxymorph.predict(folder, model=tiny_model, out=out, progress=False)
    assert summary.n_images == 3 and summary.n_errors == 2
    df = pd.read_csv(out, keep_default_na=False, na_values=[""]).set_index("path")
    black, dot = df.loc[str(folder / "black.png")], df.loc[str(folder / "dot.png")]
    assert black["error"].startswith("constant image: nothing to classify")
    assert "too small to classify" in dot["error"]
    for row in (black, dot):  # refused, not answered with a class
        assert pd.isna(row["label"]) and pd.isna(row["label_name"]) and pd.isna(row["probability"])
    fine = df.loc[str(folder / "good.png")]
    assert pd.isna(fine["error"]) and not pd.isna(fine["label"])


# -- HDF5 --------------------------------------------------------------------------------------

def _h5_declaring(path: Path, shape: tuple[int, ...], rows: int | None = None) -> Path:
    import h5py

    with h5py.File(path, "w") as f:  # chunked and never written: the file stays a few KB
        f.create_dataset("images", shape=shape, dtype=np.uint8, chunks=(1, *shape[1:3], 3))
        f.create_dataset("ans", shape=(rows or shape[0],), dtype=np.int64, chunks=(min(1024, rows or shape[0]),))
    return path


@pytest.mark.parametrize("shape, needle", [
    ((200_000_000, 64, 64, 3), "declares 200,000,000 rows"),
    ((2, 9000, 9000, 3), "rows are 9000x9000 pixels"),
])
def test_h5_declaring_a_huge_shape_is_refused_unread(tmp_path, shape, needle):
    from galaxymorph.data.specs import open_source

    path = _h5_declaring(tmp_path / "bomb.h5", shape)
    assert path.stat().st_size < 1 << 20
    with bounded(), pytest.raises(DataError, match=needle):
        open_source(str(path))


# -- special files in a catalog ----------------------------------------------------------------

@pytest.fixture
def special_catalog(tmp_path):
    """A catalog whose rows point at /dev/zero, a named pipe (nobody writes to it) and a folder."""
    from PIL import Image

    from makedata import galaxy_image

    images = tmp_path / "images"
    images.mkdir()
    os.mkfifo(images / "pipe.png")
    (images / "folder.png").mkdir()
    Image.fromarray(galaxy_image(0, 32)).save(images / "good.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,label\n/dev/zero,0\npipe.png,1\nfolder.png,0\ngood.png,1\n")
    return csv


def test_devices_pipes_and_folders_are_refused_without_reading(special_catalog):
    from galaxymorph.data import open_dataset

    ds = open_dataset(f"catalog:{special_catalog}")
    by_name = {Path(ds.location(i)).name: i for i in range(len(ds))}
    with bounded(seconds=10):
        with pytest.raises(ImageReadError, match=r"zero: is a device, not a regular file"):
            ds.read(by_name["zero"])
        with pytest.raises(ImageReadError, match=r"pipe\.png: is a named pipe, not a regular file"):
            ds.read(by_name["pipe.png"])
        with pytest.raises(ImageReadError, match=r"folder\.png: is a folder"):
            ds.read(by_name["folder.png"])
        assert ds.read(by_name["good.png"]).shape == (32, 32, 3)


def test_decode_cache_skips_special_files_and_keeps_the_good_one(special_catalog, tmp_path):
    from galaxymorph.data import open_dataset
    from galaxymorph.data.cache import decode_all
    from galaxymorph.data.transforms import Preprocessing

    ds = open_dataset(f"catalog:{special_catalog}")
    with bounded(seconds=30, memory=64 << 20):
        decoded = decode_all(ds, Preprocessing(16, 1.0), cache=tmp_path / "cache", num_workers=0,
                             progress=False)
    assert decoded.ok.tolist() == [False, False, False, True]
    assert "device" in decoded.errors[0] and "named pipe" in decoded.errors[1]


def test_oversized_file_is_refused_unread(tmp_path, monkeypatch):
    from galaxymorph.data import imageio

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ImageReadError, match=r"big.png: file is 4,096 bytes, more than the 1,024"):
        imageio.read_file_bytes(big, max_bytes=imageio.MAX_FILE_BYTES)
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nothing.png")


# -- model cards -------------------------------------------------------------------------------

@pytest.fixture
def card_folder(tiny_model, tmp_path):
    """A copy of a trained model folder whose card the test may tamper with."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "model_card.json"):
        shutil.copy(tiny_model / name, folder / name)
    return folder


def _tamper(folder: Path, **changes) -> None:
    path = folder / "model_card.json"
    card = json.loads(path.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            card[outer][inner] = value
        else:
            card[key] = value
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("changes, needle", [
    ({"temperature": 0}, "temperature must be a positive number, got 0"),
    ({"temperature": -1}, "temperature must be a positive number, got -1"),
    ({"temperature": "hot"}, "temperature must be a positive number"),
    ({"image_size": "32"}, "image_size must be an integer"),
    ({"crop": 2}, r"crop must be a fraction within \(0, 1\]"),
    ({"chiral_pairs": [[0, 99]]}, "chiral_pairs must be a list of"),
    ({"class_names": ["a", "a", "b", "c"]}, r"class_names repeats \['a'\]"),
    ({"class_names": "Elliptical"}, "class_names must be a list"),
    ({"model_kwargs.image_size": 100000}, r"model_kwargs.image_size must be an integer within"),
    ({"model_kwargs": {"weights_path": "/etc/passwd"}}, r"model_kwargs has unknown keys \['weights_path'\]"),
    ({"format_version": 7}, "format_version 7 is not one this version reads"),
])
def test_tampered_card_is_one_clear_error(card_folder, changes, needle):
    from galaxymorph.models.loading import load_classifier

    _tamper(card_folder, **changes)
    with bounded(), pytest.raises(ModelError, match=needle) as info:
        load_classifier(card_folder)
    assert "model_card.json" in str(info.value)


def test_card_naming_more_classes_than_the_weights_have(card_folder):
    from galaxymorph.models.loading import load_classifier

    card = json.loads((card_folder / "model_card.json").read_text())
    _tamper(card_folder, class_names=card["class_names"] + ["Extra1", "Extra2"])
    with pytest.raises(ModelError, match="weights do not fit the card") as info:
        load_classifier(card_folder)
    assert "model.safetensors" in str(info.value) and "Traceback" not in str(info.value)


def test_card_that_is_not_an_object(card_folder):
    from galaxymorph.models.loading import load_classifier

    (card_folder / "model_card.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelError, match="model card must be a JSON object"):
        load_classifier(card_folder)


def test_checkpoint_info_is_validated_like_a_card(tiny_model, tmp_path):
    import torch

    from galaxymorph.models.loading import load_classifier

    ckpt = torch.load(tiny_model / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["galaxymorph"]["config"]["image_size"] = 100000
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with bounded(memory=256 << 20), pytest.raises(ModelError, match="image_size must be an integer"):
        load_classifier(tmp_path / "bad.ckpt")


# -- label maps --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("classes: [A, B, A]\nmap: {0: A, 1: B}\n", r"lists class\(es\) \['A'\] more than once"),
    ("classes: [A, B]\nmap: {0: A, 1: C}\n", r"target 'C' is not one of its classes \['A', 'B'\] \(raw label 1\)"),
    ("classes: [A, B]\nmap: {0: [A], 1: B}\n", r"target \['A'\] is not a name"),
    ("classes: [A, B]\nmap: {0: A, '0': B}\n", "names raw label 0 twice"),
])
def test_bad_label_map_is_one_clear_error(tmp_path, text, needle):
    from galaxymorph.data.label_maps import load_label_map

    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle) as info:
        load_label_map(path)
    assert "map.yaml" in str(info.value)


def test_integer_class_names_in_yaml_work(tmp_path):
    from galaxymorph.data import open_dataset
    from makedata import write_catalog

    csv = write_catalog(tmp_path / "cat", classes=("a", "b", "c"), per_class=2)
    path = tmp_path / "ints.yaml"
    path.write_text("classes: [1, 2]\nmap: {0: 1, 1: 2, 2: 2}\n")
    ds = open_dataset(f"catalog:{csv}", label_map=str(path))
    assert ds.class_names == ["1", "2"]
    assert np.bincount(ds.labels).tolist() == [2, 4]


# -- the web app -------------------------------------------------------------------------------

def test_markdown_looking_file_name_is_shown_as_text(tiny_model, inference_catalog, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from galaxymorph.app import core, launcher

    monkeypatch.setenv(core.ENV_MODEL, str(tiny_model))
    png = next((inference_catalog.parent / "images").glob("*.png")).read_bytes()
    name = "[click](http://evil.example) **x**.png"
    at = AppTest.from_file(str(launcher.app_script()), default_timeout=120).run()
    at.file_uploader[0].set_value([(name, png, "image/png"),
                                   ("[bad](http://evil.example).png", b"junk", "image/png")])
    at.run()
    assert not at.exception
    heading = next(m.value for m in at.markdown if m.value.startswith("#####"))
    assert heading == "##### " + core.plain(name)
    assert "](" not in heading and "**" not in heading.replace("\\*", "")
    assert all("](" not in e.value for e in at.error) and len(at.error) == 1


def test_app_says_a_blank_upload_has_nothing_to_classify(tiny_model, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from galaxymorph.app import core, launcher

    monkeypatch.setenv(core.ENV_MODEL, str(tiny_model))
    at = AppTest.from_file(str(launcher.app_script()), default_timeout=120).run()
    blank = _png_bytes(np.full((64, 64, 3), 255, dtype=np.uint8))
    at.file_uploader[0].set_value(("blank.png", blank, "image/png")).run()
    assert not at.exception
    assert [e.value for e in at.error] == [core.plain("blank.png: constant image: nothing to "
                                                      "classify (every pixel is 255, 255, 255)")]
    assert not any("Predicted class" in m.value for m in at.markdown)


def test_plain_escapes_what_markdown_would_render():
    from galaxymorph.app.core import plain

    assert plain("[a](http://b)") == "\\[a\\]\\(http\\://b\\)"
    assert plain("www.evil.org gal_01.png") == "www\\.evil.org gal\\_01.png"
    assert plain("Edge-on 73.5%") == "Edge-on 73.5%"
