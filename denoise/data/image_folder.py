"""Read a folder of image files into uint8 ``(C, H, W)`` arrays, once: later runs load a cache.

Files are read with :func:`denoise.files.images.read_image` (so training reads what ``predict``
reads, with the same one-line errors) and converted to 8-bit grey (Pillow's ``L``, ITU-R 601-2
luma) or RGB; 16-bit and float pixels are scaled to 8 bits and alpha is dropped. A file counts
as an image by its suffix: every suffix Pillow opens, in any case (``.png``, ``.jpg``, ``.bmp``,
``.tif``, ``.pgm``, ``.webp``, ...); other files and hidden ones (``.DS_Store``) are skipped.

Decoding thousands of files takes long, so the arrays are cached as one ``.npz`` per folder,
keyed on every image's relative path, size and modification time (and the colour mode): adding,
removing or editing a file decodes the folder again. The cache is written atomically, so a crash
or two runs at once never leave a broken one; a bad file stops the run with one line naming it,
and no cache is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from denoise.files.atomic import atomic_file
from denoise.files.images import from_unit_float, read_image, to_unit_float
from denoise.runtime.errors import UserError
from denoise.runtime.memory import check_fits, gigabytes

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
MODES = {1: "L", 3: "RGB"}  # data.channels -> the Pillow mode images are converted to
# Suffixes Pillow registers but that are no pictures to train on, or need outside programs
# (Ghostscript, Windows) or handlers Pillow does not ship.
NOT_PICTURES = frozenset(
    {".eps", ".ps", ".wmf", ".emf", ".h5", ".hdf", ".bufr", ".grib", ".mpeg", ".mpg"}
)


class ImageFolderError(UserError):
    """A folder of images that cannot be used as it is."""


@dataclass(frozen=True)
class FolderImages:
    """The images of a folder, in the order of their sorted relative paths."""

    folder: Path
    names: tuple[str, ...]  # relative paths with "/", sorted
    images: tuple[np.ndarray, ...]  # uint8 (C, H, W), sizes may differ


def image_suffixes() -> frozenset[str]:
    """Every file suffix that Pillow opens, lower case, less :data:`NOT_PICTURES`."""
    Image.init()
    opened = {
        suffix
        for suffix, image_format in Image.registered_extensions().items()
        if image_format in Image.OPEN
    }
    return frozenset(opened - NOT_PICTURES)


def list_images(folder: str | os.PathLike, recursive: bool, key: str) -> list[Path]:
    """The image files of ``folder`` (and its subfolders where ``recursive``), sorted by their
    relative paths so that no listing order of the file system changes a split; ``key`` is the
    setting that named the folder, for the errors."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise ImageFolderError(f"{folder}: no such folder ({key})")
    if not folder.is_dir():
        raise ImageFolderError(f"{folder}: is not a folder; {key} takes a folder of images")
    suffixes = image_suffixes()
    images, skipped = [], 0
    for root, subfolders, files in os.walk(folder):
        subfolders[:] = [] if not recursive else [n for n in subfolders if not n.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in suffixes:
                images.append(Path(root, name))
            else:
                skipped += 1
    if not images:
        where = "in it or its subfolders" if recursive else "in it (subfolders not read)"
        if not skipped:
            raise ImageFolderError(f"{folder}: no image files {where}: it holds no files")
        raise ImageFolderError(
            f"{folder}: no image files {where}, only {skipped} other files (images are "
            "files with a suffix Pillow opens: .png, .jpg, .bmp, .tif, .pgm, ...)"
        )
    if skipped:
        log.info("%s: skipped %d files that are not images by their suffix", folder, skipped)
    return sorted(images, key=lambda path: path.relative_to(folder).as_posix())


def load_image_folder(
    folder: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    channels: int,
    recursive: bool = True,
    key: str = "data.train_dir",
) -> FolderImages:
    """The images of ``folder`` as ``channels``-channel uint8 arrays, from the cache when
    exactly these files were decoded before."""
    folder = Path(folder).expanduser()
    files = list_images(folder, recursive, key)
    names = tuple(path.relative_to(folder).as_posix() for path in files)
    cache_file = _cache_file(folder, files, names, cache_dir, channels) if cache_dir else None
    cached = cache_file is not None and cache_file.exists()
    _check_memory(folder, files, channels, cache_file if cached else None, key)
    if cached:
        try:
            images = _read_cache(cache_file, names)
        except (OSError, ValueError, KeyError, zlib.error) as error:
            log.warning(
                "Ignoring unreadable cache %s (%s); decoding %s again", cache_file, error, folder
            )
        else:
            return FolderImages(folder, names, images)
    log.info("Decoding %d images of %s (once: later runs load the cache)", len(files), folder)
    images = tuple(decode_image(path, channels) for path in files)
    if cache_file is not None:
        _write_cache(cache_file, names, images)
        log.info("Cached %d images of %s in %s", len(images), folder, cache_file)
    return FolderImages(folder, names, images)


def _check_memory(
    folder: Path, files: Sequence[Path], channels: int, cache_file: Path | None, key: str
) -> None:
    """Refuse a folder whose images would not fit in memory once decoded, before decoding
    them: the cache's size where there is one (it is stored uncompressed), else the sizes in
    the files' headers, twice (the decoded images, and the cache's one buffer of them)."""
    if cache_file is not None:
        needed = cache_file.stat().st_size
        what, detail = "loading its images from the cache", "its decoded pixels"
    else:
        needed = 2 * channels * sum(_header_pixels(path) for path in files)
        what = f"decoding its {len(files)} images"
        detail = (
            f"{gigabytes(needed / 2)} of {MODES[channels]} pixels, twice as the cache is written"
        )
    grey = ", or grey ones (data.channels=1)" if channels > 1 else ""
    check_fits(str(folder), needed, what, detail, f"train on fewer or smaller images ({key}){grey}")


def _header_pixels(path: Path) -> int:
    """Width times height as the file's header says (Pillow reads no pixels to say it); 0
    where it cannot tell: decoding says what is wrong with the file."""
    if not path.is_file():  # a FIFO would block the open: decoding names what it is
        return 0
    try:
        with Image.open(path) as image:
            return image.width * image.height
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0


def decode_image(path: Path, channels: int) -> np.ndarray:
    """One file as uint8 ``(channels, H, W)``: scaled to 8 bits, alpha dropped, then converted
    by Pillow to ``L`` (grey) or ``RGB``."""
    array = read_image(path)  # (H, W) or (H, W, 2-4); uint8, uint16 or float32
    if array.dtype != np.uint8:
        array = from_unit_float(to_unit_float(array), np.uint8)
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = array[..., :-1]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    converted = np.asarray(Image.fromarray(array).convert(MODES[channels]))
    planes = converted[None] if converted.ndim == 2 else converted.transpose(2, 0, 1)
    return np.array(planes, order="C")  # a writable copy: Pillow's arrays are read-only


def _cache_file(
    folder: Path,
    files: Sequence[Path],
    names: Sequence[str],
    cache_dir: str | os.PathLike,
    channels: int,
) -> Path:
    digest = hashlib.sha256(
        f"{folder.resolve()}|{MODES[channels]}|v{CACHE_FORMAT_VERSION}".encode()
    )
    for path, name in zip(files, names, strict=True):
        stat = path.stat()
        digest.update(f"\n{name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    name = folder.resolve().name or "root"
    return Path(cache_dir).expanduser() / "folders" / f"{name}.{digest.hexdigest()[:16]}.npz"


def _read_cache(cache_file: Path, names: Sequence[str]) -> tuple[np.ndarray, ...]:
    """The arrays of a cache: one flat buffer cut by the stored shapes (views, no copies)."""
    with np.load(cache_file, allow_pickle=False) as stored:
        pixels, shapes, stored_names = stored["pixels"], stored["shapes"], stored["names"]
    if list(stored_names) != list(names) or shapes.shape != (len(names), 3):
        raise ValueError("it lists other files")
    ends = np.cumsum(shapes.prod(axis=1))
    if ends[-1] != pixels.size:
        raise ValueError(f"{pixels.size} pixels, expected {ends[-1]}")
    starts = np.concatenate([[0], ends[:-1]])
    return tuple(
        pixels[start:end].reshape(shape)
        for start, end, shape in zip(starts, ends, shapes, strict=True)
    )


def _write_cache(cache_file: Path, names: Sequence[str], images: Sequence[np.ndarray]) -> None:
    shapes = np.array([image.shape for image in images], dtype=np.int64)
    pixels = np.concatenate([image.ravel() for image in images])
    with atomic_file(cache_file, replace=False) as handle:  # two runs at once: one cache
        np.savez(handle, pixels=pixels, shapes=shapes, names=np.array(names, dtype=str))
