"""Image files for the command-line tools (``predict``, ``add_noise``), and the helpers they share.

Reading goes through one function, :func:`read_image`, so both tools accept the same files and
refuse the rest with the same one-line errors. TIFF is read with tifffile, which keeps 16-bit
colour and float pixels; everything else (and TIFF colour spaces tifffile leaves raw, such as
CMYK or palette) with Pillow, whose mode says what the pixels mean: imageio hides the mode and
handed a CMYK JPEG over as RGBA. Every image comes back as

* grayscale ``(H, W)``, grey + alpha ``(H, W, 2)``, RGB ``(H, W, 3)``, RGBA ``(H, W, 4)``;
* ``uint8`` or ``uint16``, or ``float32`` (float TIFF) with values in [0, 1];

and the tools write their output in that same size, layout and pixel type. Pillow modes:

* kept as they are: ``L``, ``LA``, ``RGB``, ``RGBA``, ``I;16`` (and ``I;16B``/``I;16L``), ``F``;
* exact conversions: ``1`` to 8-bit grey (0 and 255); ``P`` to RGB (grey for a grey palette),
  plus alpha where the palette has transparency, and ``PA`` to RGBA; premultiplied
  ``La``/``RGBa`` to ``LA``/``RGBA``; padded ``RGBX`` to RGB; 32-bit ``I`` (and other integer
  TIFF) to 16 bits when every value fits, else refused;
* no way back, so read as RGB and written as RGB, with a warning: ``CMYK``, ``YCbCr``,
  ``LAB``, ``HSV`` (Pillow's conversion, without colour management).

Limits of the file formats and of Pillow (not of this code): Pillow reads 16-bit *colour* as
8-bit, with a warning (PNG, and TIFF compressed with LZW or JPEG, which tifffile decodes only
with the optional imagecodecs package); it writes 16-bit only for grayscale PNG, and JPEG and
BMP only as 8-bit grey or RGB; an output that its format cannot hold is refused before any
work. TIFF keeps any of these images. Images over ``max_pixels`` are refused from the file's
header, before decoding.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from denoise.files.atomic import atomic_file
from denoise.files.reading import regular_file
from denoise.runtime.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
JPEG_QUALITY = 95  # Pillow's default, 75, would add visible artefacts to a restored image
LAYOUTS = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
DEFAULT_MAX_PIXELS = 50_000_000  # max_pixels of conf/predict.yaml and conf/add_noise.yaml
SIGNATURES = {  # the first bytes of each format we read, to tell a damaged file from another kind
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"II+\x00": "TIFF",  # BigTIFF
    b"MM\x00+": "TIFF",
}
KEPT_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
EXACT_CONVERSIONS = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}
RGB_ONLY_MODES = ("CMYK", "YCbCr", "LAB", "HSV")  # no faithful way back to these
# Pillow formats whose extra frames are parts or views of one picture, not more pictures:
# a PSD's layers (the first frame is their composite), an MPO's previews or stereo views.
# TIFF pages are counted by tifffile, which tells a thumbnail page from a picture.
FRAMES_OF_ONE_PICTURE = ("PSD", "MPO", "TIFF")
TIFFFILE_PHOTOMETRICS = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
GREY_OR_RGB_8_BIT = {np.dtype(np.uint8): (1, 3)}
WRITABLE = {  # the channel counts, per pixel type, that Pillow writes (and reads back) per suffix
    ".png": {np.dtype(np.uint8): (1, 2, 3, 4), np.dtype(np.uint16): (1,)},
    ".jpg": GREY_OR_RGB_8_BIT,
    ".jpeg": GREY_OR_RGB_8_BIT,
    ".bmp": GREY_OR_RGB_8_BIT,
}  # TIFF (tifffile) writes them all


class ImageError(UserError):
    """A file that cannot be read or written as an image."""


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the name has an image suffix (any case); folder mode picks files with it."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of an image file, ``(H, W)`` or ``(H, W, C)`` with C in 2-4 (alpha last); an
    image of more than ``max_pixels`` (None: no limit) is refused undecoded, and so is a file of
    several pictures (an animation, a multi-page TIFF)."""
    path = Path(path)
    kind = _file_kind(path)
    try:
        array = _read_tiff(path, max_pixels) if kind == "TIFF" else None
        if array is None:  # not a TIFF, or one for Pillow (also one that tifffile found damaged)
            array = _read_with_pillow(path, max_pixels)
    except (ImageError, MemoryError):
        raise
    except OSError as error:
        if error.errno is not None:  # the file system's error, not the decoder's
            raise ImageError(f"{path}: cannot read the file ({error.strerror})") from error
        raise _damaged(path, kind, error) from error
    except Exception as error:  # each decoder raises its own kind of error
        raise _damaged(path, kind, error) from error
    return _checked_pixels(path, array)


def _file_kind(path: Path) -> str | None:
    """The format the file's first bytes name (None: none we know), after the checks that need
    no decoder: a missing file, a folder, an empty file."""
    regular_file(path, ImageError, folder="is a folder, not an image file")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except FileNotFoundError as error:
        raise ImageError(f"{path}: no such file") from error
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror})") from error
    if not head:
        raise ImageError(f"{path}: not an image file (empty file)")
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _damaged(path: Path, kind: str | None, error: Exception) -> ImageError:
    """The error for a file no decoder could read: damaged if it starts like an image."""
    if kind is None:
        return ImageError(f"{path}: not an image file (not PNG, JPEG, BMP or TIFF data)")
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, UnidentifiedImageError):
        reason = "its header cannot be read"
    elif "truncated" in reason.lower():
        reason = "truncated"
    return ImageError(f"{path}: damaged {kind} file ({reason})")


def _check_size(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image over the pixel limit from its header, before it takes any memory."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{path}: {width}x{height} is {width * height / 1e6:.3g} megapixels, over "
            f"max_pixels={max_pixels}; set max_pixels higher, or to null for no limit"
        )


def _read_tiff(path: Path, max_pixels: int | None) -> np.ndarray | None:
    """The first page of a TIFF as stored (16-bit colour, float), or None where Pillow must
    convert it: a colour space other than grey or RGB, premultiplied alpha, a compression
    tifffile cannot decode without the optional imagecodecs package (LZW, JPEG), or a file
    tifffile cannot parse (Pillow then says what is wrong, in its own words)."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            _check_size(path, page.imagewidth, page.imagelength, max_pixels)
            _check_one_picture(path, _tiff_pictures(tiff), "pages")
            if (
                page.photometric not in TIFFFILE_PHOTOMETRICS
                or tifffile.EXTRASAMPLE.ASSOCALPHA in page.extrasamples
                or page.compression not in tifffile.TIFF.DECOMPRESSORS
            ):
                return None
            array, axes = page.asarray(), page.axes
    except (ImageError, MemoryError):
        raise
    except OSError as error:
        if error.errno is not None:
            raise
        return None
    except Exception:  # tifffile's errors for a damaged file are of many kinds
        return None
    if axes.startswith("S"):  # planar TIFF: one plane per sample
        array, axes = np.moveaxis(array, 0, -1), axes[1:] + "S"
    if axes not in ("YX", "YXS"):
        raise ImageError(
            f"{path}: unsupported TIFF layout {axes} {array.shape}; one 2-D image is read per page"
        )
    return array


def _tiff_pictures(tiff: tifffile.TiffFile) -> int:
    """The full-size pages of a TIFF: a reduced-resolution page (a thumbnail, a pyramid level)
    shows the same picture again, smaller."""
    if len(tiff.pages) == 1:
        return 1
    return sum(1 for page in tiff.pages if not page.is_reduced)


def _check_one_picture(path: Path, count: int, what: str) -> None:
    """Refuse a file of several pictures (an animation, a multi-page TIFF): the tools write one
    picture per file, and restoring the first alone would lose the others without a word."""
    if count > 1:
        raise ImageError(
            f"{path}: has {count} {what}; denoise restores single pictures "
            f"(save the {what[:-1]} you want as its own image file)"
        )


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs what it finds wrong in a damaged file (``invalid offset to first page``);
    the error this module raises says it in one line, so those logs are held back."""
    logger = logging.getLogger("tifffile")
    saved = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(saved)


@contextmanager
def _pillow_without_its_pixel_limit() -> Iterator[None]:
    """Pillow warns above 89 megapixels and refuses twice that when it opens a file; here
    ``max_pixels`` is the limit (checked on the header right after the lazy open), so that
    ``max_pixels=null`` means no limit and no Pillow warning or traceback gets through."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read_with_pillow(path: Path, max_pixels: int | None) -> np.ndarray:
    with _pillow_without_its_pixel_limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. corrupt EXIF: the pixels are what matter here
        with Image.open(path) as image:
            _check_size(path, *image.size, max_pixels)
            if image.format not in FRAMES_OF_ONE_PICTURE:
                _check_one_picture(path, getattr(image, "n_frames", 1), "frames")
            stored_as = _raw_mode(image)  # before reading EXIF, which may decode the pixels
            return pillow_pixels(_upright(image, path), path, stored_as)


def _upright(image: Image.Image, path: Path) -> Image.Image:
    """The image as viewers show it: a phone photo stores its pixels sideways with an EXIF
    orientation tag, which the written output (no EXIF) would lose."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in (1, None):
        return image
    log.info(f"{path}: EXIF orientation {orientation} applied; the output is upright")
    return ImageOps.exif_transpose(image)


def pillow_pixels(
    image: Image.Image, path: str | os.PathLike, stored_as: str | None = None
) -> np.ndarray:
    """The pixels of a Pillow image in the layouts of this module (see the module doc for
    each mode); ``path`` names the file in warnings and errors; ``stored_as`` is the file's
    raw mode where the image was already decoded."""
    mode = image.mode
    deep = mode in ("LA", "RGB", "RGBA") and ";16" in (stored_as or _raw_mode(image))
    if deep:
        log.warning(
            f"{path}: 16-bit colour read as 8-bit, the most Pillow reads; "
            "an uncompressed or deflate TIFF keeps 16 bits"
        )
    if mode in KEPT_MODES:
        array = np.asarray(image)
    elif mode in EXACT_CONVERSIONS:
        array = np.asarray(image.convert(EXACT_CONVERSIONS[mode]))
    elif mode == "P":
        palette = np.asarray(image.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)
        grey = bool((palette == palette[:, :1]).all())
        transparent = "transparency" in image.info or image.palette.mode == "RGBA"
        colour = "L" if grey else "RGB"
        array = np.asarray(image.convert(f"{colour}A" if transparent else colour))
    elif mode in RGB_ONLY_MODES:
        log.warning(f"{path}: {mode} image read as RGB (no exact way back); the output is RGB")
        array = np.asarray(image.convert("RGB"))
    else:
        raise ImageError(f"{path}: unsupported image mode {mode}")
    if array.dtype.byteorder not in "=|":  # I;16B: big-endian in memory
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _raw_mode(image: Image.Image) -> str:
    """How the file stores the pixels (``RGB;16B``: 16-bit RGB), which Pillow's mode hides."""
    tile = getattr(image, "tile", None)  # only images read from a file have one
    if not tile:
        return ""
    args = tile[0][3]
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _checked_pixels(path: Path, array: np.ndarray) -> np.ndarray:
    """``array`` in one of the supported layouts and pixel types, or an ImageError."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in LAYOUTS)) or not array.size:
        raise ImageError(
            f"{path}: unsupported image shape {array.shape}; "
            "grey, grey+alpha, RGB and RGBA images are read"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu" and array.dtype not in PIXEL_TYPES:
        array = _as_unsigned(path, array)
    if array.dtype not in PIXEL_TYPES:
        raise ImageError(f"{path}: unsupported pixel type {array.dtype} (use 8 or 16 bits)")
    if array.dtype == np.float32 and not 0.0 <= array.min() <= array.max() <= 1.0:
        raise ImageError(
            f"{path}: float pixel values must lie in [0, 1] "
            f"(these go from {array.min():g} to {array.max():g})"
        )
    return array


def _as_unsigned(path: Path, array: np.ndarray) -> np.ndarray:
    """Other integers (32-bit ``I``, signed TIFF) as 8 or 16 bits where every value fits
    unchanged; otherwise there is no honest way to scale them, so they are refused."""
    low, high = int(array.min()), int(array.max())
    target = np.dtype(np.uint8 if array.dtype.itemsize == 1 else np.uint16)
    if low < 0 or high > np.iinfo(target).max:
        raise ImageError(
            f"{path}: {array.dtype} pixel values from {low} to {high} do not fit "
            f"{target.itemsize * 8} bits (save the image as 8 or 16 bit, or as float TIFF)"
        )
    log.info(f"{path}: {array.dtype} pixels (all from {low} to {high}) read as {target}")
    return array.astype(target)


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` in the format its suffix names; the file appears whole or not at all."""
    path = Path(path)
    check_writable(path, array)
    if path.is_dir():
        raise ImageError(f"{path}: cannot write the file (a folder has that name)")
    in_the_way = next((parent for parent in path.parents if parent.is_file()), None)
    if in_the_way is not None:
        raise ImageError(f"{path}: cannot write the file ({in_the_way} is a file, not a folder)")
    options = {"quality": JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        with atomic_file(path) as handle:
            iio.imwrite(handle, array, extension=path.suffix.lower(), **options)
    except OSError as error:
        if error.errno is not None:  # the file system's: no such folder, no space, a folder
            raise ImageError(f"{path}: cannot write the file ({error.strerror})") from error
        raise _unwritable(path, array, error) from error
    except (KeyError, TypeError, ValueError) as error:
        raise _unwritable(path, array, error) from error


def check_writable(path: Path, array: np.ndarray) -> None:
    """Refuse, before any work, an image that the output's format cannot hold (Pillow would
    fail, or drop alpha from a BMP without a word); TIFF holds every image of this module."""
    check_image_suffix(path)
    channels = 1 if array.ndim == 2 else array.shape[-1]
    suffix = path.suffix.lower()
    if suffix in WRITABLE and channels not in WRITABLE[suffix].get(array.dtype, ()):
        raise _unwritable(path, array)


def _unwritable(path: Path, array: np.ndarray, error: Exception | None = None) -> ImageError:
    reason = f" ({error})" if error is not None else ""
    return ImageError(
        f"{path}: cannot write a {describe(array)} image as {path.suffix}{reason}; "
        ".tif keeps any image"
    )


def check_image_suffix(path: Path) -> None:
    """Refuse an output name whose suffix is not an image type we write."""
    if not is_image_file(path):
        raise ImageError(f"{path}: not an image file name (use one of {', '.join(IMAGE_SUFFIXES)})")


def describe(array: np.ndarray) -> str:
    """``640x480 RGB uint8``: width x height, colour layout, pixel type."""
    channels = 1 if array.ndim == 2 else array.shape[-1]
    return f"{array.shape[1]}x{array.shape[0]} {LAYOUTS[channels]} {array.dtype}"


def to_unit_float(array: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: integers are divided by their type's maximum."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def from_unit_float(array: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Back from [0, 1] to ``dtype``: clipped, then scaled to the type's range and rounded."""
    dtype = np.dtype(dtype)
    clipped = np.clip(array, 0.0, 1.0)
    if np.issubdtype(dtype, np.integer):
        return np.rint(clipped * np.iinfo(dtype).max).astype(dtype)
    return clipped.astype(dtype)


def image_to_tensor(array: np.ndarray) -> tuple[torch.Tensor, np.ndarray | None]:
    """The colour planes as a ``(C, H, W)`` float tensor in [0, 1], and the alpha plane apart:
    alpha is no picture content, so the tools pass it through untouched."""
    colour, alpha = (array[..., :-1], array[..., -1]) if _has_alpha(array) else (array, None)
    if colour.ndim == 3 and colour.shape[-1] == 1:
        colour = colour[..., 0]
    planes = to_unit_float(colour)
    planes = planes[None] if planes.ndim == 2 else planes.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(planes)), alpha


def tensor_to_image(
    planes: torch.Tensor, dtype: np.dtype | type, alpha: np.ndarray | None = None
) -> np.ndarray:
    """The inverse of :func:`image_to_tensor`: an ``(H, W[, C])`` array of ``dtype``."""
    values = planes.detach().cpu().numpy()
    colour = from_unit_float(values[0] if len(values) == 1 else values.transpose(1, 2, 0), dtype)
    return colour if alpha is None else np.dstack([colour, alpha])


def _has_alpha(array: np.ndarray) -> bool:
    return array.ndim == 3 and array.shape[-1] in (2, 4)


def check_input_output(source: Path, target: Path) -> None:
    """Fail before any work on a file-to-file command whose paths cannot work."""
    regular_file(source, ImageError, folder="is a folder; this command takes an image file")
    if target.is_dir():
        raise ImageError(
            f"{target}: is a folder; for one input image, name the output file "
            f"(e.g. output={target / source.name})"
        )
    check_image_suffix(target)
    if target.resolve() == source.resolve():
        raise ImageError(f"{target}: the output would overwrite the input; choose another name")
