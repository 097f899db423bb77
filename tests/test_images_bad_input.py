"""Bad image files and bad outputs: each is refused with one exact line, before any decoding
where the header already says no (:mod:`denoise.files.images`)."""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from denoise.files.images import DEFAULT_MAX_PIXELS, read_image, write_image
from denoise.runtime.errors import UserError

PIXELS = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # not compressible


def png_header(width: int, height: int) -> bytes:
    """A grey PNG that claims ``width`` x ``height`` and holds no pixel data: refusing it
    by size shows that the header was read and nothing decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encoded(array: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, image_format)
    return buffer.getvalue()


def tiff(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


# name -> (the file's bytes, or None for a folder or no file, its max_pixels, the message after
# "<path>: ")
BAD_FILES: dict[str, tuple[Callable[[], bytes | None], int | None, str]] = {
    "missing.png": (lambda: None, DEFAULT_MAX_PIXELS, "no such file"),
    "empty.png": (lambda: b"", DEFAULT_MAX_PIXELS, "not an image file (empty file)"),
    "notes.png": (
        lambda: b"hello, not a picture",
        DEFAULT_MAX_PIXELS,
        "not an image file (not PNG, JPEG, BMP or TIFF data)",
    ),
    "junk.png": (
        lambda: b"\x89PNG\r\n\x1a\n" + b"junk" * 8,
        DEFAULT_MAX_PIXELS,
        "damaged PNG file (truncated)",
    ),
    "cut.png": (
        lambda: encoded(PIXELS, "PNG")[:300],
        DEFAULT_MAX_PIXELS,
        "damaged PNG file (truncated)",
    ),
    "cut.jpg": (
        lambda: encoded(PIXELS, "JPEG")[:1000],
        DEFAULT_MAX_PIXELS,
        "damaged JPEG file (truncated)",
    ),
    "junk.bmp": (
        lambda: b"BM" + b"junk" * 8,
        DEFAULT_MAX_PIXELS,
        "damaged BMP file (truncated)",
    ),
    "junk.tif": (
        lambda: b"II*\x00" + b"junk" * 8,
        DEFAULT_MAX_PIXELS,
        "damaged TIFF file (its header cannot be read)",
    ),
    "huge.png": (
        lambda: png_header(12000, 12000),
        DEFAULT_MAX_PIXELS,
        "12000x12000 is 144 megapixels, over max_pixels=50000000; "
        "set max_pixels higher, or to null for no limit",
    ),
    "large.tif": (
        lambda: tiff(PIXELS),
        4000,
        "64x64 is 0.0041 megapixels, over max_pixels=4000; "
        "set max_pixels higher, or to null for no limit",
    ),
    "signed.tif": (
        lambda: tiff(np.array([[-5, 0], [7, 70000]], dtype=np.int32)),
        DEFAULT_MAX_PIXELS,
        "int32 pixel values from -5 to 70000 do not fit 16 bits "
        "(save the image as 8 or 16 bit, or as float TIFF)",
    ),
    "bright.tif": (
        lambda: tiff(np.array([[-0.5, 0.0], [1.0, 2.0]], dtype=np.float32)),
        DEFAULT_MAX_PIXELS,
        "float pixel values must lie in [0, 1] (these go from -0.5 to 2)",
    ),
    "bands.tif": (
        lambda: tiff(
            np.zeros((4, 6, 5), np.uint8),
            photometric="rgb",
            extrasamples=[0, 0],
            planarconfig="contig",
        ),
        DEFAULT_MAX_PIXELS,
        "unsupported image shape (4, 6, 5); grey, grey+alpha, RGB and RGBA images are read",
    ),
    "volume.tif": (
        lambda: tiff(np.zeros((2, 5, 6), np.uint8), volumetric=True),
        DEFAULT_MAX_PIXELS,
        "unsupported TIFF layout ZYX (2, 5, 6); one 2-D image is read per page",
    ),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_image_file_is_one_exact_line(name: str, tmp_path: Path) -> None:
    content, max_pixels, problem = BAD_FILES[name]
    path = tmp_path / name
    data = content()
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(UserError, match=f"^{re.escape(f'{path}: {problem}')}$"):
        read_image(path, max_pixels)


def test_a_folder_named_like_an_image_is_no_image_file(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    with pytest.raises(
        UserError, match=rf"^{re.escape(str(tmp_path))}/x\.png: is a folder, not an image file$"
    ):
        read_image(tmp_path / "x.png")


def test_pillows_own_pixel_limit_neither_warns_nor_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow warns above its MAX_IMAGE_PIXELS and refuses twice that (DecompressionBombError,
    a traceback); max_pixels replaces it, so null really means no limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "face.png"
    path.write_bytes(encoded(PIXELS, "PNG"))  # 4096 pixels: over twice Pillow's limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(read_image(path, max_pixels=None), PIXELS)
    assert Image.MAX_IMAGE_PIXELS == 1000  # put back


UNWRITABLE = {  # output name, pixels -> the message after "<path>: "
    ("clean.png", "float32"): "cannot write a 6x4 grey float32 image as .png; .tif keeps any image",
    ("clean.png", "rgb16"): "cannot write a 6x4 RGB uint16 image as .png; .tif keeps any image",
    ("clean.bmp", "rgba"): "cannot write a 6x4 RGBA uint8 image as .bmp; .tif keeps any image",
    ("clean.jpg", "grey+alpha"): (
        "cannot write a 6x4 grey+alpha uint8 image as .jpg; .tif keeps any image"
    ),
}
ARRAYS = {
    "float32": np.zeros((4, 6), np.float32),
    "rgb16": np.zeros((4, 6, 3), np.uint16),
    "rgba": np.zeros((4, 6, 4), np.uint8),
    "grey+alpha": np.zeros((4, 6, 2), np.uint8),
}


@pytest.mark.parametrize(("name", "pixels"), UNWRITABLE)
def test_an_image_its_format_cannot_hold_is_refused_unwritten(
    name: str, pixels: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    message = UNWRITABLE[name, pixels]
    with pytest.raises(UserError, match=f"^{re.escape(f'{path}: {message}')}$"):
        write_image(path, ARRAYS[pixels])
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_an_output_path_that_cannot_be_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "notes").write_text("a file, not a folder")
    target = tmp_path / "taken.png"
    with pytest.raises(
        UserError,
        match=f"^{re.escape(f'{target}: cannot write the file (a folder has that name)')}$",
    ):
        write_image(target, PIXELS)
    target = tmp_path / "notes" / "clean.png"
    problem = f"cannot write the file ({tmp_path / 'notes'} is a file, not a folder)"
    with pytest.raises(UserError, match=f"^{re.escape(f'{target}: {problem}')}$"):
        write_image(target, PIXELS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes", "taken.png"]
    assert list((tmp_path / "taken.png").iterdir()) == []
