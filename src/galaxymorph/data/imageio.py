"""Decode one galaxy image (JPEG, PNG 8/16-bit, greyscale, RGBA, FITS) to an RGB uint8 array.

Every failure becomes an :class:`~galaxymorph.errors.ImageReadError` that names the file, so a
dataset can report and skip it instead of stopping a run of thousands of images.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from galaxymorph.errors import ImageReadError

#: Largest image we agree to decode (pixels). 64 Mpx of RGB uint8 is ~200 MB decoded; a
#: galaxy cutout is rarely above 1 Mpx, so anything larger is a mistake or a decompression bomb.
MAX_PIXELS = 64_000_000
#: Largest file we read. A 64 Mpx image stays far below it even as float64 FITS; a catalog row
#: that points at something bigger (a whole survey tile, a disk image) is refused unread.
MAX_FILE_BYTES = 1 << 30
#: Smallest side we classify: a network resizes anything to its input, so a 1x1 "image" would
#: still get a confident answer; below this there is no morphology to see.
MIN_SIDE = 8

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
IMAGE_SUFFIXES = RASTER_SUFFIXES + FITS_SUFFIXES


def is_image_path(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(IMAGE_SUFFIXES)


def is_fits(name: str | Path) -> bool:
    return str(name).lower().endswith(FITS_SUFFIXES)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array."""
    path = Path(path)
    return decode_image(read_file_bytes(path), name=str(path), max_pixels=max_pixels)


def read_file_bytes(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else is one clear error.

    Opened non-blocking and checked on the open descriptor (no race with a swapped file), so a
    named pipe never hangs a run and ``/dev/zero`` is never read until memory runs out.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageReadError("file not found", path) from None
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image", path) from None
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise ImageReadError("is a folder, not an image", path) from None
        raise ImageReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError("is a folder, not an image", path)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device"
                    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket"
                    if stat.S_ISSOCK(st.st_mode) else "not a file")
            raise ImageReadError(f"is {kind}, not a regular file; only image files are read", path)
        if st.st_size > max_bytes:
            raise ImageReadError(f"file is {st.st_size:,} bytes, more than the {max_bytes:,} an "
                                 "image may have; cut a smaller stamp", path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(st.st_size + 1)  # read(n) allocates n up front: ask for what is there
    except OSError as exc:
        raise ImageReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
    finally:
        os.close(fd)
    if len(data) > st.st_size:  # grew while we read it: a log or a stream, not an image
        raise ImageReadError("file is growing while read; only finished image files are read", path)
    return data


def check_classifiable(image: np.ndarray, name: str = "<array>") -> np.ndarray:
    """``image`` if it shows something to classify; an ImageReadError for garbage.

    A network resizes any input and answers with confidence, so a 1x1 pixel would come out as
    "73% Edge-on", and an all-zero FITS (or a blank JPEG) as a confident class too; refused here
    instead (an all-NaN FITS is refused by the FITS decoder, before it is cleaned to zeros).
    """
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageReadError(f"image is {w}x{h} pixels, too small to classify (at least "
                             f"{MIN_SIDE}x{MIN_SIDE})", name)
    first = image[0, 0]
    # The centre pixel first: almost every real image differs there, so the full pass is rare.
    if np.array_equal(image[h // 2, w // 2], first) and (image == first).all():
        value = ", ".join(str(int(v)) for v in np.atleast_1d(first))
        raise ImageReadError(f"constant image: nothing to classify (every pixel is {value})", name)
    return image


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes (e.g. an upload) as an ``(H, W, 3)`` uint8 RGB array."""
    if not data:
        raise ImageReadError("empty file", name)
    if is_fits(name) or data[:6] == b"SIMPLE":
        return check_classifiable(_decode_fits(data, name, max_pixels), name)
    return check_classifiable(_decode_raster(data, name, max_pixels), name)


def _decode_raster(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageReadError(
                    f"image is {w}x{h} pixels, more than the {max_pixels:,} this tool decodes "
                    "(it would exhaust memory); cut a smaller stamp", name)
            img.load()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL refuses before our own check can run: say so as plainly as ours would.
        raise ImageReadError(f"image is too large to decode ({exc}); this tool decodes at most "
                             f"{max_pixels:,} pixels; cut a smaller stamp", name) from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"not a readable image ({type(exc).__name__})", name) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image ({exc})", name) from exc
    return _to_rgb_uint8(img, name)


def _to_rgb_uint8(img, name: str) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanpercentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
        arr = _scale_to_uint8(arr, lo, hi)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "RGBA" or mode == "LA" or (mode == "P" and "transparency" in img.info):
        # Transparent pixels are empty sky: composite onto black, not white.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(f"unexpected image layout {arr.shape}", name)
    return np.ascontiguousarray(arr)


def _scale_to_uint8(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = hi - lo if hi > lo else 1.0
    return (np.clip((arr - lo) / scale, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _decode_fits(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    from astropy.io import fits

    try:
        with fits.open(io.BytesIO(data), memmap=False) as hdul:
            # The size comes from the header, checked before the data (or a compressed
            # tile's expansion) is loaded.
            hdu = next((h for h in hdul if getattr(h, "is_image", False) and len(h.shape) >= 2), None)
            if hdu is None:
                raise ImageReadError("FITS file has no image extension", name)
            check_fits_shape(tuple(hdu.shape), name, max_pixels)
            if hdu.data is None:
                raise ImageReadError("FITS image extension holds no data", name)
            cube = np.asarray(hdu.data, dtype=np.float64)
            if not np.isfinite(cube).any():
                raise ImageReadError("FITS image has no finite pixel (all NaN or infinite)", name)
    except ImageReadError:
        raise
    except Exception as exc:  # astropy raises many types for a damaged file
        raise ImageReadError(f"corrupt or unreadable FITS ({type(exc).__name__}: {exc})", name) from exc
    return fits_to_rgb(cube, name)


def check_fits_shape(shape: tuple[int, ...], name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse, from the header alone, a FITS array we would not turn into an image: more than
    three planes, or more pixels in all than ``max_pixels`` (a 200 KB tile-compressed cube can
    declare 100x1000x1000 and expand to gigabytes once read)."""
    planes = [n for n in shape[:-2] if n != 1]
    if len(planes) > 1 or (planes and planes[0] not in (3,) and shape[-1] != 3):
        raise ImageReadError(f"FITS data of shape {shape}: expected one band or three", name)
    total = int(np.prod(shape, dtype=np.float64)) if shape else 0
    if total > max_pixels:
        raise ImageReadError(f"FITS image {shape} is larger than {max_pixels:,} pixels "
                             f"({total:,} values in all, read from the header)", name)


def fits_to_rgb(cube: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Stretch a FITS array to display RGB: one band as grey, three bands with Lupton asinh.

    Arrays are stored bottom-up in FITS, so rows are flipped to the usual image orientation.
    """
    cube = np.nan_to_num(np.squeeze(cube), nan=0.0, posinf=0.0, neginf=0.0)
    if cube.ndim == 2:
        bands = [cube]
    elif cube.ndim == 3 and cube.shape[0] in (1, 3):
        bands = list(cube)
    elif cube.ndim == 3 and cube.shape[-1] == 3:
        bands = [cube[..., i] for i in range(3)]
    else:
        raise ImageReadError(f"FITS data of shape {cube.shape}: expected one band or three", name)
    if len(bands) == 1:
        grey = _asinh_grey(bands[0])
        return np.repeat(grey[..., None], 3, axis=2)[::-1].copy()
    from astropy.visualization import make_lupton_rgb

    # Convention for galaxy cutouts: bands ordered blue->red (g, r, i/z): red channel is the last.
    b, g, r = bands
    scale = float(np.nanpercentile(np.abs(np.stack(bands)), 99.5)) or 1.0
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 on empty sky, handled inside
        rgb = make_lupton_rgb(r / scale, g / scale, b / scale, stretch=0.5, Q=8, minimum=0.0)
    return np.ascontiguousarray(rgb[::-1])


def _asinh_grey(band: np.ndarray) -> np.ndarray:
    lo = float(np.percentile(band, 1.0))
    hi = float(np.percentile(band, 99.7))
    x = np.clip((band - lo) / (hi - lo if hi > lo else 1.0), 0.0, None)
    soft = 0.1
    y = np.arcsinh(x / soft) / np.arcsinh(1.0 / soft)
    return (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
