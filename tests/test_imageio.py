"""Decoding every image format a survey cutout arrives in, and refusing the bad ones clearly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galaxymorph.data.imageio import decode_image, read_image
from galaxymorph.errors import ImageReadError
from makedata import galaxy_image


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_jpeg_is_rgb_uint8_close_to_the_original(tmp_path):
    src = galaxy_image(1, 48)
    out = read_image(_save(Image.fromarray(src), tmp_path / "g.jpg", quality=95))
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - src.astype(int)).mean() < 6  # lossy, but the same picture


def test_png_8bit_is_exact(tmp_path):
    src = galaxy_image(0, 40)
    out = read_image(_save(Image.fromarray(src), tmp_path / "g.png"))
    np.testing.assert_array_equal(out, src)


def test_png_16bit_grey_is_stretched_to_full_range(tmp_path):
    # A faint 16-bit image (values 1000..1400) would be all-black if simply cast to 8 bits.
    ramp = (1000 + np.linspace(0, 400, 64 * 32)).reshape(32, 64).astype(np.uint16)
    path = _save(Image.fromarray(ramp), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    out = read_image(path)
    assert out.shape == (32, 64, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out.min() == 0 and out.max() == 255
    assert out[0, 0, 0] < out[-1, -1, 0]  # order of brightness kept


def test_rgba_transparent_pixels_become_black_sky(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:8, :, 3] = 255  # top half opaque white, bottom half transparent
    out = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert out.shape == (16, 16, 3)
    assert (out[:8] == 255).all() and (out[8:] == 0).all()


def test_palette_png(tmp_path):
    img = Image.fromarray(galaxy_image(2, 24)).convert("P", palette=Image.Palette.ADAPTIVE)
    out = read_image(_save(img, tmp_path / "p.png"))
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    assert out.max() > 100  # colours came through the palette, not indices


def test_fits_single_band_is_grey_and_flipped_to_image_orientation(tmp_path):
    from astropy.io import fits

    band = np.zeros((20, 30), np.float32)
    band[0, :] = 100.0  # FITS row 0 is the bottom of the picture
    fits.PrimaryHDU(band).writeto(tmp_path / "one.fits")
    out = read_image(tmp_path / "one.fits")
    assert out.shape == (20, 30, 3)
    assert (out[..., 0] == out[..., 2]).all()
    assert out[-1].mean() > 200 and out[0].mean() < 10


def test_fits_three_band_cube_uses_lupton_colour(tmp_path):
    from astropy.io import fits

    cube = np.zeros((3, 24, 24), np.float32)  # g, r, z: blue -> red
    cube[2, 4:12, 4:12] = 50.0  # bright only in the reddest band
    cube[0, 14:20, 14:20] = 50.0  # bright only in the bluest band
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube)]).writeto(tmp_path / "cube.fits")
    out = read_image(tmp_path / "cube.fits")
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    red_patch = out[24 - 12:24 - 4, 4:12].reshape(-1, 3).mean(0)  # rows flipped
    blue_patch = out[24 - 20:24 - 14, 14:20].reshape(-1, 3).mean(0)
    assert red_patch[0] > 100 and red_patch[2] < 20
    assert blue_patch[2] > 100 and blue_patch[0] < 20


def test_fits_bytes_are_detected_without_a_suffix():
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(64, dtype=np.float32).reshape(8, 8)).writeto(buf)
    assert decode_image(buf.getvalue(), name="upload").shape == (8, 8, 3)


def test_corrupt_bytes_name_the_file(tmp_path):
    bad = tmp_path / "noise.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ImageReadError, match=r"noise.jpg"):
        read_image(bad)


def test_truncated_jpeg(tmp_path):
    good = _save(Image.fromarray(galaxy_image(1, 256)), tmp_path / "full.jpg", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])  # header intact
    with pytest.raises(ImageReadError, match=r"cut\.jpg.*(truncated|corrupt)"):
        read_image(cut)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.png: empty file"):
        read_image(tmp_path / "empty.png")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothere.png: file not found"):
        read_image(tmp_path / "nothere.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_small_max_pixels_refuses_with_the_size(tmp_path):
    path = _save(Image.fromarray(galaxy_image(0, 64)), tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big.png: image is 64x64 pixels, more than the 1,000"):
        read_image(path, max_pixels=1000)


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height``: a decompression bomb in miniature."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [9_000, 100_000])  # above our limit; above PIL's bomb limit
def test_huge_claimed_size_is_refused_before_decoding(side):
    with pytest.raises(ImageReadError, match=r"bomb\.png: image is .*(too large|more than)") as err:
        decode_image(_png_header_claiming(side, side), name="bomb.png")
    assert "smaller stamp" in str(err.value)


def test_fits_larger_than_max_pixels(tmp_path):
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((40, 40), np.float32)).writeto(tmp_path / "big.fits")
    with pytest.raises(ImageReadError, match=r"big.fits: FITS image \(40, 40\) is larger"):
        read_image(tmp_path / "big.fits", max_pixels=100)


def test_fits_without_image_and_with_four_bands(tmp_path):
    from astropy.io import fits

    fits.PrimaryHDU().writeto(tmp_path / "header_only.fits")
    with pytest.raises(ImageReadError, match="no image extension"):
        read_image(tmp_path / "header_only.fits")
    fits.PrimaryHDU(np.zeros((4, 8, 8), np.float32)).writeto(tmp_path / "four.fits")
    with pytest.raises(ImageReadError, match="expected one band or three"):
        read_image(tmp_path / "four.fits")
