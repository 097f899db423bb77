"""Memory bombs (issue 24): settings, files and images that would need more memory than there
is end in one ``error: …`` line within seconds, before anything is allocated, and no line of
a message is ever longer than ``LINE_LIMIT`` whatever it quotes.

In-process, the memory there is is fixed (``free_memory`` patched) so that every line is
exact; then each hostile size once more as a real command under an address-space limit of
2 GiB (``RLIMIT_AS``), which must refuse it with its line, quickly, and stay under the limit."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from conftest import TINY_MODEL, child_env, command_config, train_command, user_error
from PIL import Image
from test_images_bad_input import png_header

from denoise.data.fer_csv import CSVFormatError, parse_fer_csv
from denoise.inference.restore_files import predict
from denoise.models.footprint import activation_values, max_depth, parameter_count
from denoise.runtime import memory
from denoise.runtime.errors import LINE_LIMIT, UserError, error_lines, shorten
from denoise.runtime.memory import FreeMemory, free_memory
from denoise.training.run import train

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "logger=none"]
GIB = 1024**3
ADDRESS_SPACE_LIMIT = 2 * GIB  # a tiny training run maps 1.35 GB at its peak (VmPeak)
FAST_S = 60  # the child's whole life, imports included, on a shared CPU (the checks: < 1 s)


@pytest.fixture
def one_gigabyte(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine has 1 GB free, whatever it really has: every line below is exact."""
    monkeypatch.setattr(
        memory, "free_memory", lambda device="cpu": FreeMemory(10**9, "this machine has free")
    )


def nothing_written(tmp_path: Path) -> None:
    """No cache; (the run folder that ``train`` made is the command's ``main`` to remove: the
    subprocess tests below check that it did.)"""
    assert not (tmp_path / "cache" / "csv").exists()


# ------------------------------------------------------------------- the network's size


def test_a_depth_beyond_the_images_is_refused(compose_train, tiny_csv: Path, tmp_path, capsys):
    cfg = compose_train(f"data.csv_path={tiny_csv}", *QUICK, "model.net.depth=100")
    assert user_error(train, cfg, capsys) == [
        "error: model.net.depth=100: too deep for 48x48 images (data.height, data.width): the "
        "deepest level would be 48/2^99 pixels wide, under one; at most model.net.depth=6"
    ]
    nothing_written(tmp_path)


def test_a_depth_beyond_the_crops_is_refused(compose_train, tmp_path, capsys):
    cfg = compose_train(
        "data=folder", f"data.train_dir={tmp_path}", "data.crop_size=16", "model.net.depth=6"
    )
    assert user_error(train, cfg, capsys) == [
        "error: model.net.depth=6: too deep for 16x16 images (data.crop_size): the deepest level "
        "would be 16/2^5 pixels wide, under one; at most model.net.depth=5"
    ]


def test_a_network_too_wide_for_the_memory_is_refused(
    compose_train, tiny_csv: Path, tmp_path, capsys, one_gigabyte
):
    cfg = compose_train(
        f"data.csv_path={tiny_csv}", *QUICK, "model.net.base_channels=100000", "model.net.depth=3"
    )
    assert user_error(train, cfg, capsys) == [
        "error: model.net.base_channels=100000, model.net.depth=3: the network would need about "
        "8.07e+04 GB (its weights, their gradients and Adam's state: 8.06e+04 GB; the "
        "activations of one 48x48 image: 25.8 GB), over the 1 GB this machine has free",
        "use a smaller model.net.base_channels or model.net.depth",
    ]
    nothing_written(tmp_path)


def test_images_too_large_for_the_memory_are_refused(
    compose_train, tiny_csv: Path, tmp_path, capsys, one_gigabyte
):
    cfg = compose_train(f"data.csv_path={tiny_csv}", *QUICK, "data.image_size=4096")
    assert user_error(train, cfg, capsys) == [
        "error: data.image_size=4096: the network would need about 66.7 GB (its weights, "
        "their gradients and Adam's state: 0.138 GB; the activations of one 4096x4096 "
        "image: 66.6 GB), over the 1 GB this machine has free",
        "use smaller images (data.image_size)",
    ]


def test_a_batch_too_large_for_the_memory_is_refused_once_its_size_is_known(
    compose_train, tiny_csv: Path, tmp_path, capsys, monkeypatch
):
    """A batch is at most the whole training split: 10,000,000 on 64 images is a batch of 64,
    refused only where 64 images do not fit."""
    monkeypatch.setattr(
        memory, "free_memory", lambda device="cpu": FreeMemory(2 * 10**7, "this machine has free")
    )
    cfg = compose_train(
        f"data.csv_path={tiny_csv}", *QUICK, *TINY_MODEL, "data.batch_size=10000000"
    )
    assert user_error(train, cfg, capsys) == [
        "error: data.batch_size=10000000: the network would need about 0.0662 GB (its "
        "weights, their gradients and Adam's state: 0.00013 GB; the activations of 64 48x48 "
        "images: 0.0661 GB), over the 0.02 GB this machine has free",
        "use a smaller data.batch_size",
    ]


def test_the_estimate_counts_the_unets_weights() -> None:
    """Within 5% of the real network's (biases and batch norms are left out)."""
    from denoise.models.unet import DenoisingUNet

    for base, depth in ((32, 5), (4, 3), (12, 4)):
        real = sum(p.numel() for p in DenoisingUNet(1, 1, base, depth).parameters())
        assert 0.95 * real <= parameter_count(base, depth, 1, 1) <= real
    assert activation_values(4, 3, 48, 48) == 4 * 48 * 48 + 8 * 24 * 24 + 16 * 12 * 12
    assert activation_values(4, 3, 45, 45) == activation_values(4, 3, 48, 48)  # padded
    assert [max_depth(side) for side in (8, 15, 16, 48)] == [4, 4, 5, 6]


def test_free_memory_honours_an_address_space_limit() -> None:
    """Under ``ulimit -v`` what is left of the limit is what there is."""
    probe = (
        "import resource; from denoise.runtime.memory import free_memory; "
        f"resource.setrlimit(resource.RLIMIT_AS, ({4 * GIB}, {4 * GIB})); print(free_memory())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=child_env()
    )
    free = eval(out.stdout, {"FreeMemory": FreeMemory})
    assert free.limited_by == "this process may still map (ulimit -v)"
    assert 0 < free.bytes < 4 * GIB
    assert free_memory() is not None  # Linux always says


# ---------------------------------------------------------------------- files that are no CSV


def test_a_huge_file_of_zero_bytes_is_refused_from_its_first_bytes(
    compose_train, tmp_path: Path, capsys
):
    zeros = tmp_path / "zeros.csv"
    with zeros.open("wb") as handle:
        handle.truncate(2 * GIB)  # sparse: no disk
    cfg = compose_train(f"data.csv_path={zeros}", *QUICK)
    started = time.perf_counter()
    assert user_error(train, cfg, capsys) == [
        f"error: {zeros}: not a CSV file (binary data: NUL bytes in its first 4 kB)"
    ]
    assert time.perf_counter() - started < 10  # Lightning's start, no reading of 2 GB
    nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("name", "data", "line", "fix"),
    [
        ("photo.csv", b"\x89PNG\r\n\x1a\n" + bytes(100), "not a CSV file (PNG image data)", None),
        (
            "packed.csv",
            b"\x1f\x8b\x08\x00" + bytes(20),
            "not a CSV file (gzip-compressed data)",
            "a compressed CSV needs the suffix that says how: .gz, .bz2, .xz or .zst",
        ),
        (
            "one_line.csv",
            b"a" * (200 * 1024),
            "not a FER-style CSV (no line break in its first 64 kB: its first line should be a "
            "header naming the columns emotion, pixels and Usage)",
            None,
        ),
    ],
    ids=["png", "gzip", "endless_line"],
)
def test_binary_data_and_endless_lines_are_no_csv(
    tmp_path: Path, name: str, data: bytes, line: str, fix: str | None
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CSVFormatError) as raised:
        parse_fer_csv(path)
    assert str(raised.value) == f"{path}: {line}"
    assert raised.value.fix == fix


def test_zero_bytes_inside_a_compressed_csv_are_found_after_decompression(tmp_path: Path):
    import gzip

    path = tmp_path / "zeros.csv.gz"
    path.write_bytes(gzip.compress(bytes(1024 * 1024)))
    with pytest.raises(CSVFormatError, match=r"zeros\.csv\.gz: not a CSV file \(binary data"):
        parse_fer_csv(path)


def test_a_huge_column_name_is_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("x" * 60_000 + "," + ",".join(f"c{i}" for i in range(20)) + "\n1\n")
    with pytest.raises(CSVFormatError) as raised:
        parse_fer_csv(path)
    message = str(raised.value)
    assert message == (
        f"{path}: missing column 'pixels', 'Usage' (found '{'x' * 39}…{'x' * 39}' (60,000 "
        "characters), 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8' and 11 more; "
        "a FER-style CSV has 'emotion', 'pixels' and 'Usage')"
    )


# ------------------------------------------------------------------------ messages' length


def test_shorten_keeps_both_ends_and_says_the_length() -> None:
    assert shorten("short", quote=True) == "'short'"
    assert shorten("a" * 200_000_000, 10, quote=True) == "'aaaa…aaaa' (200,000,000 characters)"
    assert shorten("b" * 81) == "b" * 39 + "…" + "b" * 39 + " (81 characters)"


def test_no_line_of_a_message_is_longer_than_the_limit() -> None:
    lines = error_lines(UserError("x.csv: " + "y" * 10**6, fix="z" * 10**6))
    assert [len(line) <= LINE_LIMIT + 30 for line in lines] == [True, True]
    assert lines[0].startswith("error: x.csv: yyy") and lines[0].endswith("(1,000,014 characters)")
    assert error_lines(OSError(28, "No space left", "o" * 5000))[0].endswith("characters)")


def test_a_long_setting_is_shown_short(compose_train, tiny_csv: Path, capsys) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", f"model.loss={'l' * 5000}")
    (line,) = user_error(train, cfg, capsys)
    shortened = f"{'l' * 39}…{'l' * 39} (5,000 characters)"
    assert line == f"error: model.loss={shortened}: must be one of mse, psnr, psnr_l1"


# ----------------------------------------------------------------------------- data=folder


def test_a_folder_of_images_too_large_to_decode_is_refused_from_their_headers(
    compose_train, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.setattr(
        memory, "free_memory", lambda device="cpu": FreeMemory(10**8, "this machine has free")
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("L", (6000, 4000)).save(folder / name)  # all black: tiny files
    cfg = compose_train("data=folder", f"data.train_dir={folder}", *QUICK, *TINY_MODEL)
    assert user_error(train, cfg, capsys) == [
        f"error: {folder}: decoding its 3 images would need about 0.144 GB (0.072 GB of L "
        "pixels, twice as the cache is written), over the 0.1 GB this machine has free",
        "train on fewer or smaller images (data.train_dir)",
    ]
    assert not (tmp_path / "cache").exists()


# -------------------------------------------------------------------------------- predict


def test_a_tile_too_large_for_the_memory_is_refused(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr(
        memory, "free_memory", lambda device="cpu": FreeMemory(10**8, "this machine has free")
    )
    source, target = tmp_path / "photo.png", tmp_path / "clean.png"
    Image.fromarray(np.full((1024, 1024), 128, np.uint8)).save(source)
    cfg = command_config("predict", input=source, output=target, weights="faces", tile_size=100000)
    assert user_error(predict, cfg, capsys) == [
        f"error: {source}: tile_size=100000, batch_size=256: denoising it would need about "
        "0.252 GB (the network's activations for 1 tile of 1024x1024 px), over the 0.1 GB "
        "this machine has free",
        "use a smaller tile_size or batch_size",
    ]
    assert not target.exists()


# ------------------------------------- the real commands under an address-space limit of 2 GiB


class LimitedRun(NamedTuple):
    done: subprocess.CompletedProcess
    seconds: float
    peak_bytes: int  # this child's own peak resident memory, not any earlier child's


def limited(command: list[str], cwd: Path) -> LimitedRun:
    """``command`` run with at most ``ADDRESS_SPACE_LIMIT`` of address space: a regression
    fails (MemoryError, or a refused allocation) instead of taking the machine down."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    env = {**child_env("HYDRA_FULL_ERROR"), "OMP_NUM_THREADS": "2", "MALLOC_ARENA_MAX": "2"}
    started = time.perf_counter()
    with (cwd / "limited.out").open("w+") as out, (cwd / "limited.err").open("w+") as err:
        child = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=err, preexec_fn=limit
        )
        watchdog = threading.Timer(120, child.kill)  # only a hung child is stopped
        watchdog.start()
        _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone
        watchdog.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, child.returncode, out.read(), err.read())
    return LimitedRun(done, time.perf_counter() - started, usage.ru_maxrss * 1024)


def refused_within_limits(run: LimitedRun) -> list[str]:
    done = run.done
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert run.seconds < FAST_S
    assert run.peak_bytes < 2 * GIB
    return [line for line in done.stderr.splitlines() if line and not line.startswith("[")]


FREE = r"over the [0-9.e+]+ GB this process may still map \(ulimit -v\)"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "line"),
    [
        (
            ["model.net.depth=100"],
            r"error: model\.net\.depth=100: too deep for 48x48 images "
            r"\(data\.height, data\.width\): the deepest level would be 48/2\^99 pixels wide, "
            r"under one; at most model\.net\.depth=6",
        ),
        (
            ["model.net.base_channels=100000"],
            r"error: model\.net\.base_channels=100000, model\.net\.depth=3: the network would "
            r"need about 8\.07e\+04 GB \(.*\), " + FREE,
        ),
    ],
    ids=["depth", "base_channels"],
)
def test_train_refuses_a_network_too_large_under_a_memory_limit(
    tiny_csv: Path, tmp_path: Path, settings: list[str], line: str
):
    command = train_command(tiny_csv, tmp_path, *QUICK, "trainer.accelerator=cpu", *settings)
    lines = refused_within_limits(limited(command, tmp_path))
    assert re.fullmatch(line, lines[0]), lines
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_train_refuses_a_huge_file_of_zeros_under_a_memory_limit(tmp_path: Path):
    zeros = tmp_path / "zeros.csv"
    with zeros.open("wb") as handle:
        handle.truncate(2 * GIB)
    command = train_command(zeros, tmp_path, *QUICK, "trainer.accelerator=cpu")
    lines = refused_within_limits(limited(command, tmp_path))
    assert lines == [f"error: {zeros}: not a CSV file (binary data: NUL bytes in its first 4 kB)"]


@pytest.mark.slow
def test_predict_refuses_huge_images_under_a_memory_limit(tmp_path: Path):
    """A header that claims 100000x100000 (max_pixels, before decoding), and a real 16-megapixel
    photo made one tile by tile_size (the natural model would need some 5 GB for it)."""
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(100_000, 100_000))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((4000, 4000), 128, np.uint8)).save(photo)
    predict_command = [sys.executable, "-m", "denoise.predict", "output=clean.png"]

    lines = refused_within_limits(limited([*predict_command, f"input={huge}"], tmp_path))
    assert lines == [
        f"error: {huge}: 100000x100000 is 1e+04 megapixels, over max_pixels=50000000; "
        "set max_pixels higher, or to null for no limit"
    ]
    command = [*predict_command, f"input={photo}", "tile_size=1000000", "batch_size=1"]
    lines = refused_within_limits(limited(command, tmp_path))
    assert re.fullmatch(
        rf"error: {re.escape(str(photo))}: tile_size=1000000, batch_size=1: denoising it would "
        r"need about [0-9.]+ GB \(the network's activations for 1 tile of 4000x4000 px\), " + FREE,
        lines[0],
    ), lines
    assert lines[1:] == ["use a smaller tile_size or batch_size"]
    assert not (tmp_path / "clean.png").exists()
