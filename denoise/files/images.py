"""Image files for the command-line tools (``predict``, ``add_noise``), and the helpers they share.

Files are read and written with imageio (it comes with scikit-image): Pillow for PNG, JPEG and
BMP, tifffile for TIFF, so 16-bit PNG and TIFF keep their bit depth. Every image comes back in
the size, colour layout and pixel type it went in with:

* grayscale ``(H, W)``, grey + alpha ``(H, W, 2)``, RGB ``(H, W, 3)``, RGBA ``(H, W, 4)``; palette
  images are read as RGB(A), 1-bit images as 8-bit;
* ``uint8`` and ``uint16``; float TIFF is kept as ``float32`` and must hold values in [0, 1];
  other pixel types are refused.

Limits of the file formats (not of this code): Pillow reads a 16-bit *colour* PNG as 8-bit, and
writes 16-bit only for grayscale PNG; TIFF keeps any of these images.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from denoise.files.atomic import atomic_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
JPEG_QUALITY = 95  # Pillow's default, 75, would add visible artefacts to a restored image
LAYOUTS = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}


class ImageError(ValueError):
    """A file that cannot be read or written as an image."""


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the name has an image suffix (any case); folder mode picks files with it."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of an image file, ``(H, W)`` or ``(H, W, C)`` with C in 2-4 (alpha last)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # imageio's legacy plugins, tried on a non-image, warn
            warnings.simplefilter("ignore", DeprecationWarning)
            array = iio.imread(path, index=0)  # the first frame of a multi-frame file
    except Exception as error:  # each decoder raises its own kind of error
        raise ImageError(f"{path}: not a readable image ({error})") from error
    return _checked_pixels(path, array)


def _checked_pixels(path: Path, array: np.ndarray) -> np.ndarray:
    """``array`` in one of the supported layouts and pixel types, or an ImageError."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in LAYOUTS)) or not array.size:
        raise ImageError(f"{path}: unsupported image shape {array.shape} (multi-page or volume?)")
    if array.dtype not in PIXEL_TYPES:
        raise ImageError(f"{path}: unsupported pixel type {array.dtype} (use 8 or 16 bits)")
    if array.dtype == np.float32 and not 0.0 <= array.min() <= array.max() <= 1.0:
        raise ImageError(f"{path}: float pixel values must lie in [0, 1]")
    return array


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` in the format its suffix names; the file appears whole or not at all."""
    path = Path(path)
    check_image_suffix(path)
    options = {"quality": JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        with atomic_file(path) as handle:
            iio.imwrite(handle, array, extension=path.suffix.lower(), **options)
    except (OSError, TypeError, ValueError) as error:
        raise ImageError(
            f"{path}: cannot write a {describe(array)} image as {path.suffix} ({error}); "
            ".tif keeps any image"
        ) from error


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
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if source.is_dir():
        raise IsADirectoryError(f"{source}: is a folder; this command takes an image file")
    if target.is_dir():
        raise IsADirectoryError(
            f"{target}: is a folder; for one input image, name the output file "
            f"(e.g. output={target / source.name})"
        )
    check_image_suffix(target)
    if target.resolve() == source.resolve():
        raise ValueError(f"{target}: the output would overwrite the input; choose another name")


# Command-line helpers shared by the Hydra entry points.


def check_required(cfg: DictConfig, usage: str) -> None:
    """Name every missing ``???`` key at once, with the command's usage line."""
    missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}; usage: {usage}")


@contextmanager
def user_errors() -> Iterator[None]:
    """Report what the user can fix (a path, a file, a setting) in one line and exit with
    status 1, instead of a traceback; ``HYDRA_FULL_ERROR=1`` keeps the traceback."""
    try:
        yield
    except (OSError, ValueError) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise SystemExit(f"error: {error}") from None
