"""Read FER-style CSVs (``emotion``, ``pixels``, ``Usage``) into validated uint8 arrays.

Parsing the 300 MB FER2013 text takes seconds, so the result is cached as an ``.npz``
keyed on the file's path, size and modification time, and written atomically so that a
crash or two runs at once never leave a broken cache. A bad file stops the run with one
message naming the file, the row (numbered as a spreadsheet shows it: the header is
row 1) and the problem; no cache is written for it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from denoise.files.atomic import atomic_file
from denoise.files.reading import regular_file
from denoise.runtime.errors import UserError, shorten
from denoise.runtime.memory import check_fits, gigabytes

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
REQUIRED_COLUMNS = ("pixels", "Usage")
PARSE_CHUNK_ROWS = 2048
FIRST_DATA_ROW = 2  # spreadsheet numbering: the header is row 1
SNIFF_BYTES = 4096  # text has no NUL byte: binary data has some within its first few kB
HEADER_LIMIT = 64 * 1024  # the header names a few columns: a longer first line is no header
LISTED_COLUMNS = 10  # columns a message names of a header it does not accept
# Parsing holds the text as Python strings: 2.5x the file's size at its peak (FER2013's
# 296 MB took 0.73 GB over the interpreter's own), counted low.
PARSE_BYTES_PER_TEXT_BYTE = 2
# What binary data begins with, for the message (text begins with none of these).
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image data"),
    (b"\xff\xd8\xff", "JPEG image data"),
    (b"GIF8", "GIF image data"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x93NUMPY", "a NumPy array"),
)
# What pandas decompresses, by suffix (it infers compression from the name alone).
DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
COMPRESSED = (*DECOMPRESSORS, ".zip", ".zst", ".tar")


class CSVFormatError(UserError):
    """A FER-style CSV that cannot be used as it is."""


@dataclass(frozen=True)
class FERArrays:
    """The images of a FER-style CSV with their Usage and emotion labels."""

    images: np.ndarray  # (N, H, W) uint8
    usage: np.ndarray  # (N,) str
    emotion: np.ndarray  # (N,) int16, -1 where the CSV has no usable emotion

    def select(self, usages: Iterable[str]) -> np.ndarray:
        """The images whose Usage is one of ``usages``, in file order."""
        return self.images[np.isin(self.usage, list(usages))]


def load_fer_csv(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    splits: Mapping[str, Sequence[str]],
    height: int = 48,
    width: int = 48,
) -> FERArrays:
    """Load a FER-style CSV, from the cache when this exact file was parsed before.

    ``splits`` maps split names to the Usage values they take; every Usage in the file
    must belong to one of them and every split must get at least one row.
    """
    path = Path(path).expanduser()
    _check_is_file(path)  # before "Parsing …" is said of a file that is not there
    cache_file = _cache_file(path, cache_dir, height, width) if cache_dir else None
    if cache_file is not None and cache_file.exists():
        try:
            arrays = _read_cache(cache_file)
        except (OSError, ValueError, KeyError, zlib.error) as error:
            log.warning(
                "Ignoring unreadable cache %s (%s); parsing %s again", cache_file, error, path
            )
        else:
            check_splits(arrays.usage, splits, path)
            return arrays
    log.info("Parsing %s (once: later runs load the cache)", path)
    check_text(path)  # before the memory estimate: a file of zero bytes is no text at all
    if path.suffix not in COMPRESSED:
        size = path.stat().st_size
        check_fits(
            str(path),
            PARSE_BYTES_PER_TEXT_BYTE * size,
            "parsing it",
            f"{gigabytes(size)} of text, held as Python strings while it is parsed",
            "parse it on a machine with more memory, or train on part of its rows",
        )
    arrays = parse_fer_csv(path, height, width)
    check_splits(arrays.usage, splits, path)
    if cache_file is not None:
        _write_cache(cache_file, arrays)
        log.info("Cached %d images of %s in %s", len(arrays.images), path.name, cache_file)
    return arrays


def parse_fer_csv(path: str | os.PathLike, height: int = 48, width: int = 48) -> FERArrays:
    """Parse and validate a FER-style CSV, plain or compressed (as pandas infers it)."""
    path = Path(path)
    frame = _read_frame(path)
    if frame.empty:
        raise CSVFormatError(f"{path}: the file has a header but no rows")
    images = _parse_pixels(frame["pixels"].to_numpy(dtype=object), path, height, width)
    usage = frame["Usage"].str.strip().to_numpy(dtype=str)
    if "emotion" in frame.columns:
        emotion = pd.to_numeric(frame["emotion"], errors="coerce").fillna(-1).to_numpy(np.int16)
    else:
        emotion = np.full(len(frame), -1, dtype=np.int16)
    return FERArrays(images=images, usage=usage, emotion=emotion)


def check_splits(usage: np.ndarray, splits: Mapping[str, Sequence[str]], path: Path) -> None:
    """Every row's Usage must belong to a split, and no split may be empty."""
    known = [value for values in splits.values() for value in values]
    unknown = np.flatnonzero(~np.isin(usage, known))
    if unknown.size:
        row = int(unknown[0])
        raise CSVFormatError(
            f"{path}, row {row + FIRST_DATA_ROW}: Usage {shorten(usage[row], quote=True)} "
            f"is not one of "
            f"{', '.join(known)} ({unknown.size} rows have an unknown Usage; "
            "data.splits says which Usage values each split takes)"
        )
    for split, values in splits.items():
        if not np.isin(usage, list(values)).any():
            raise CSVFormatError(
                f"{path}: the {split} split is empty: no row has Usage {' or '.join(values)}"
            )


def _check_is_file(path: Path) -> None:
    folder = "is a folder; data.csv_path takes a FER-style CSV file"
    regular_file(path, CSVFormatError, folder=folder)


def check_text(path: Path) -> None:
    """Refuse, from its first bytes, a file that is no CSV: binary data (NUL bytes, a known
    signature; read through the decompressor its suffix names) or text whose first line is no
    header. pandas would read a 2 GB file of zero bytes as one column name of 2 GB (19 GB of
    memory in two minutes) and then quote it whole in its message."""
    try:
        with _open_decompressed(path) as handle:
            head = handle.read(HEADER_LIMIT + 1)
    except (OSError, EOFError, lzma.LZMAError, zlib.error, zipfile.BadZipFile, IndexError):
        return  # a broken or mislabelled archive: pandas' own message names the problem
    kind = next((what for magic, what in SIGNATURES if head.startswith(magic)), None)
    if kind is not None:
        fix = None
        if path.suffix not in COMPRESSED and "compressed" in kind:
            fix = "a compressed CSV needs the suffix that says how: .gz, .bz2, .xz or .zst"
        raise CSVFormatError(f"{path}: not a CSV file ({kind})", fix=fix)
    if b"\x00" in head[:SNIFF_BYTES]:
        raise CSVFormatError(
            f"{path}: not a CSV file (binary data: NUL bytes in its first {SNIFF_BYTES // 1024} kB)"
        )
    if len(head) > HEADER_LIMIT and b"\n" not in head and b"\r" not in head:
        raise CSVFormatError(
            f"{path}: not a FER-style CSV (no line break in its first {HEADER_LIMIT // 1024} kB: "
            "its first line should be a header naming the columns emotion, pixels and Usage)"
        )


def _open_decompressed(path: Path) -> IO[bytes]:
    """``path`` for reading bytes as pandas reads it: decompressed by its suffix (the only
    file of a ``.zip``)."""
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        return archive.open(archive.namelist()[0])
    return DECOMPRESSORS.get(path.suffix, open)(path, "rb")


def _read_frame(path: Path) -> pd.DataFrame:
    _check_is_file(path)
    check_text(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except UnicodeDecodeError as error:
        row, byte = _first_undecodable_row(path)
        where = f"{path}, row {row}" if row else str(path)
        raise CSVFormatError(
            f"{where}: not UTF-8 text (byte 0x{byte:02x}); save the CSV as UTF-8"
        ) from error
    except (OSError, ValueError, EOFError, lzma.LZMAError, zlib.error) as error:
        raise CSVFormatError(f"{path}: cannot be read as a CSV: {error}") from error
    frame.columns = [str(name).strip() for name in frame.columns]
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        found = [shorten(name, quote=True) for name in frame.columns[:LISTED_COLUMNS]]
        more = len(frame.columns) - LISTED_COLUMNS
        listed = ", ".join(found) + (f" and {more:,} more" if more > 0 else "")
        raise CSVFormatError(
            f"{path}: missing column {', '.join(repr(name) for name in missing)} "
            f"(found {listed}; a FER-style CSV has 'emotion', 'pixels' and 'Usage')"
        )
    return frame


def _first_undecodable_row(path: Path) -> tuple[int | None, int]:
    """The spreadsheet row (header = 1) of the first line that is not UTF-8, and its bad
    byte, reading the file through the decompressor its suffix names."""
    if path.suffix == ".zip":
        return None, 0
    with _open_decompressed(path) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return number, line[error.start]
    return None, 0


def _parse_pixels(texts: np.ndarray, path: Path, height: int, width: int) -> np.ndarray:
    """Turn pixel strings into an (N, H, W) uint8 array, chunk by chunk to bound memory."""
    expected = height * width
    images = np.empty((len(texts), expected), dtype=np.uint8)
    for start in range(0, len(texts), PARSE_CHUNK_ROWS):
        rows = [_tidy(text) for text in texts[start : start + PARSE_CHUNK_ROWS]]
        counts = np.array([row.count(" ") + 1 if row else 0 for row in rows])
        wrong = np.flatnonzero(counts != expected)
        if wrong.size:
            row = int(wrong[0])
            raise CSVFormatError(
                f"{path}, row {start + row + FIRST_DATA_ROW}: 'pixels' has {counts[row]} values, "
                f"expected {expected} ({height}x{width}; set data.height and data.width for "
                "other sizes)"
            )
        joined = " ".join(rows)
        values = _parse_integers(joined)
        # fromstring stops at the first token that is not an integer, and takes a sign:
        # a short result or a sign means a bad token, which the slow scan then names.
        if values is None or values.size != len(rows) * expected or "-" in joined or "+" in joined:
            _raise_first_non_integer(rows, start, path)
            raise CSVFormatError(f"{path}: 'pixels' of rows {start + FIRST_DATA_ROW}+ do not parse")
        too_large = np.flatnonzero(values > 255)
        if too_large.size:
            row, column = divmod(int(too_large[0]), expected)
            token = rows[row].split(" ")[column]  # as written: int64 saturates on huge ones
            raise CSVFormatError(
                f"{path}, row {start + row + FIRST_DATA_ROW}: pixel value {token} "
                "is not an integer in 0-255"
            )
        images[start : start + len(rows)] = values.reshape(len(rows), expected)
    return images.reshape(len(texts), height, width)


def _parse_integers(joined: str) -> np.ndarray | None:
    """Space-separated integers, parsed in C (checking every character in Python first
    took as long as the parse itself); None, or a short array, where a token is not an
    integer. int64 saturates on absurdly long numbers instead of wrapping into 0-255."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # older numpy: warns, returns less
        try:
            return np.fromstring(joined, dtype=np.int64, sep=" ")
        except ValueError:  # newer numpy: "could not be read to its end"
            return None


def _tidy(text: str) -> str:
    """Collapse stray whitespace so that values are separated by exactly one space."""
    if text[:1] == " " or text[-1:] == " " or "  " in text or "\t" in text:
        return " ".join(text.split())
    return text


def _raise_first_non_integer(rows: Sequence[str], start: int, path: Path) -> None:
    for offset, row in enumerate(rows):
        for token in row.split(" "):
            if not (token.isascii() and token.isdigit()):
                shown = shorten(token, quote=True) if token else "an empty field"
                raise CSVFormatError(
                    f"{path}, row {start + offset + FIRST_DATA_ROW}: pixel value {shown} "
                    "is not an integer in 0-255"
                )


def _cache_file(path: Path, cache_dir: str | os.PathLike, height: int, width: int) -> Path:
    stat = path.stat() if path.is_file() else None
    identity = f"{path.resolve()}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}"
    key = hashlib.sha256(
        f"{identity}|{height}x{width}|v{CACHE_FORMAT_VERSION}".encode()
    ).hexdigest()
    return Path(cache_dir).expanduser() / "csv" / f"{path.name}.{key[:16]}.npz"


def _read_cache(cache_file: Path) -> FERArrays:
    with np.load(cache_file, allow_pickle=False) as stored:
        return FERArrays(images=stored["images"], usage=stored["usage"], emotion=stored["emotion"])


def _write_cache(cache_file: Path, arrays: FERArrays) -> None:
    with atomic_file(cache_file, replace=False) as handle:  # two runs at once: one cache
        np.savez(handle, images=arrays.images, usage=arrays.usage, emotion=arrays.emotion)
