"""Parsing, validation errors and the cache of FER-style CSVs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FER2013, fer_frame, requires_fer2013

from denoise.data.fer_csv import CSVFormatError, load_fer_csv, parse_fer_csv

SPLITS = {"train": ["Training"], "val": ["PrivateTest"], "test": ["PublicTest"]}


def _cache_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "csv").glob("*")) if (cache_dir / "csv").exists() else []


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".csv.xz", ".csv.bz2", ".csv.zip"])
def test_parses_plain_and_compressed_csvs(tmp_path: Path, suffix: str) -> None:
    frame = fer_frame({"Training": 5, "PrivateTest": 2, "PublicTest": 3})
    path = tmp_path / f"faces{suffix}"
    frame.to_csv(path, index=False)

    arrays = parse_fer_csv(path)

    assert arrays.images.shape == (10, 48, 48) and arrays.images.dtype == np.uint8
    expected = np.array([np.array(p.split(), dtype=np.uint8) for p in frame["pixels"]])
    np.testing.assert_array_equal(arrays.images.reshape(10, -1), expected)
    assert list(arrays.usage) == list(frame["Usage"])
    np.testing.assert_array_equal(arrays.emotion, frame["emotion"])
    assert arrays.select(["PublicTest"]).shape == (3, 48, 48)


def test_tolerates_stray_whitespace_and_other_sizes(tmp_path: Path) -> None:
    frame = fer_frame({"Training": 1, "PrivateTest": 1, "PublicTest": 1}, height=4, width=6)
    frame.loc[0, "pixels"] = "  " + frame.loc[0, "pixels"].replace(" ", "   ", 3) + " "
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)

    arrays = parse_fer_csv(path, height=4, width=6)

    assert arrays.images.shape == (3, 4, 6)
    assert arrays.images[0].ravel().tolist() == [int(v) for v in frame.loc[0, "pixels"].split()]


def test_cache_is_written_once_and_reused(tmp_path: Path, tiny_csv: Path, monkeypatch) -> None:
    cache_dir = tmp_path / "cache"
    first = load_fer_csv(tiny_csv, cache_dir, SPLITS)
    (cache_file,) = _cache_files(cache_dir)

    def fail(*args, **kwargs):
        raise AssertionError("the cached file was parsed again")

    monkeypatch.setattr("denoise.data.fer_csv.parse_fer_csv", fail)
    second = load_fer_csv(tiny_csv, cache_dir, SPLITS)

    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.usage, second.usage)
    assert _cache_files(cache_dir) == [cache_file]  # no temporary files left behind


def test_cache_follows_the_file_content(tmp_path: Path, tiny_csv: Path) -> None:
    cache_dir = tmp_path / "cache"
    load_fer_csv(tiny_csv, cache_dir, SPLITS)
    frame = pd.read_csv(tiny_csv)
    frame.loc[0, "pixels"] = " ".join(["7"] * 2304)
    frame.to_csv(tiny_csv, index=False)
    later = time.time() + 5
    import os

    os.utime(tiny_csv, (later, later))

    arrays = load_fer_csv(tiny_csv, cache_dir, SPLITS)

    assert (arrays.images[0] == 7).all()
    assert len(_cache_files(cache_dir)) == 2


def test_a_corrupt_cache_is_parsed_again(tmp_path: Path, tiny_csv: Path) -> None:
    cache_dir = tmp_path / "cache"
    expected = load_fer_csv(tiny_csv, cache_dir, SPLITS).images
    (cache_file,) = _cache_files(cache_dir)
    cache_file.write_bytes(b"not an npz")

    arrays = load_fer_csv(tiny_csv, cache_dir, SPLITS)

    np.testing.assert_array_equal(arrays.images, expected)


def _write_bad(tmp_path: Path, change) -> Path:
    frame = fer_frame({"Training": 4, "PrivateTest": 2, "PublicTest": 2})
    frame = change(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def _set_pixels(row: int, text: str):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, "pixels"] = text
        return frame

    return change


VALUES = [str(v) for v in range(100, 100 + 2304)]
BAD_FILES = {
    "missing column": (lambda f: f.drop(columns="Usage"), r"bad\.csv: missing column 'Usage'"),
    "too few values": (
        _set_pixels(2, " ".join(["1"] * 2303)),
        r"row 4: 'pixels' has 2303 values, expected 2304",
    ),
    "too many values": (_set_pixels(0, " ".join(["1"] * 2305)), r"row 2: 'pixels' has 2305 values"),
    "empty pixels": (_set_pixels(5, ""), r"row 7: 'pixels' has 0 values, expected 2304"),
    "fraction": (
        _set_pixels(3, " ".join(["1"] * 2303 + ["12.5"])),
        r"row 5: pixel value '12.5' is not an integer in 0-255",
    ),
    "negative": (
        _set_pixels(1, " ".join(["-3"] + ["1"] * 2303)),
        r"row 3: pixel value '-3' is not an integer",
    ),
    "text": (
        _set_pixels(1, " ".join(["1"] * 10 + ["abc"] + ["1"] * 2293)),
        r"row 3: pixel value 'abc'",
    ),
    "too large": (
        _set_pixels(6, " ".join(["1"] * 100 + ["256"] + ["1"] * 2203)),
        r"row 8: pixel value 256 is not an integer in 0-255",
    ),
    "overflowing": (
        _set_pixels(6, " ".join(["4294967296"] + ["1"] * 2303)),
        r"row 8: pixel value \d+ is not an integer in 0-255",
    ),
    "unknown usage": (
        lambda f: f.assign(Usage=f["Usage"].replace({"PublicTest": "Test"})),
        r"row 8: Usage 'Test' is not one of Training, PrivateTest, PublicTest",
    ),
    "empty split": (
        lambda f: f[f["Usage"] != "PrivateTest"],
        r"the val split is empty: no row has Usage PrivateTest",
    ),
    "header only": (lambda f: f.iloc[:0], r"the file has a header but no rows"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_stops_with_file_row_and_problem_and_writes_no_cache(
    tmp_path: Path, case: str
) -> None:
    change, message = BAD_FILES[case]
    path = _write_bad(tmp_path, change)
    cache_dir = tmp_path / "cache"

    with pytest.raises(CSVFormatError, match=message) as raised:
        load_fer_csv(path, cache_dir, SPLITS)

    assert str(path) in str(raised.value)
    assert _cache_files(cache_dir) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.csv", None, r"absent\.csv: no such file"),
        ("garbage.csv.xz", b"this is not xz data", r"garbage\.csv\.xz: cannot be read as a CSV"),
        (
            "binary.csv",
            bytes(range(256)) * 4,
            r"binary\.csv: not a CSV file \(binary data: NUL bytes in its first 4 kB\)",
        ),
    ],
)
def test_unreadable_files_get_a_clear_error(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CSVFormatError, match=message):
        load_fer_csv(path, tmp_path / "cache", SPLITS)
    assert _cache_files(tmp_path / "cache") == []


def test_unknown_usage_follows_the_configured_splits(tmp_path: Path) -> None:
    path = _write_bad(
        tmp_path, lambda f: f.assign(Usage=f["Usage"].replace({"PublicTest": "Test"}))
    )
    splits = {"train": ["Training"], "val": ["PrivateTest"], "test": ["Test"]}

    arrays = load_fer_csv(path, tmp_path / "cache", splits)

    assert arrays.select(["Test"]).shape == (2, 48, 48)


@requires_fer2013
def test_real_fer2013_parses_with_the_published_split_sizes(tmp_path: Path) -> None:
    arrays = load_fer_csv(FER2013, tmp_path / "cache", SPLITS)
    assert arrays.images.shape == (35887, 48, 48)
    counts = {
        usage: int((arrays.usage == usage).sum()) for usage in SPLITS.values() for usage in usage
    }
    assert counts == {"Training": 28709, "PrivateTest": 3589, "PublicTest": 3589}
    assert np.bincount(arrays.emotion).tolist() == [4953, 547, 5121, 8989, 6077, 4002, 6198]
