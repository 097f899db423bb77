"""Issue 24, round two: nothing lost without a word (frames of an animation, links that lead
nowhere in a folder, a checkpoint tensor no narrower model has), and no path a setting holds
writes outside its folder or removes a folder the user made."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import command_config, run_command, train_command, user_error
from omegaconf import DictConfig
from PIL import Image

from denoise.data.image_folder import load_image_folder
from denoise.data.noisy_files import add_noise
from denoise.files.images import ImageError, read_image
from denoise.files.outputs import discard_run_record
from denoise.inference.checkpoints import CheckpointError
from denoise.inference.restore_files import predict
from denoise.models.module import DenoisingModule
from denoise.reporting.sweep_table import REPORT_CSV, collect_jobs, job_status
from denoise.runtime.resolvers import MAX_FOLDER_NAME, folder_name
from denoise.training.warm_start import warm_start

PICTURE = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # 16x16 grey ramp
SEVERAL = "denoise restores single pictures"


def _frames(count: int) -> list[Image.Image]:
    return [Image.fromarray(PICTURE // (index + 1)) for index in range(count)]


def _animated(path: Path, count: int) -> Path:
    first, *rest = _frames(count)
    first.save(path, save_all=True, append_images=rest)  # GIF or APNG by the suffix
    return path


def _pages(path: Path, count: int) -> Path:
    tifffile.imwrite(path, np.stack([PICTURE] * count))
    return path


def _predict_config(source: Path, target: Path) -> DictConfig:
    return command_config("predict", input=source, output=target, weights="faces", device="cpu")


# ------------------------------------------------------------- several pictures in one file


@pytest.mark.parametrize(
    ("name", "write", "problem"),
    [
        ("anim.gif", _animated, "has 5 frames; {} (save the frame you want as its own image file)"),
        ("anim.png", _animated, "has 5 frames; {} (save the frame you want as its own image file)"),
        ("pages.tif", _pages, "has 5 pages; {} (save the page you want as its own image file)"),
    ],
    ids=["gif", "apng", "tiff"],
)
def test_a_file_of_several_pictures_is_refused_by_each_reader(
    name: str, write, problem: str, tmp_path: Path, capsys
) -> None:
    source = write(tmp_path / name, 5)
    line = f"error: {source}: {problem.format(SEVERAL)}"

    cfg = _predict_config(source, tmp_path / "clean.png")
    assert user_error(predict, cfg, capsys) == [line]
    cfg = command_config("add_noise", input=source, output=tmp_path / "noisy.png")
    assert user_error(add_noise, cfg, capsys) == [line]
    with pytest.raises(ImageError, match=f"^{re.escape(line.removeprefix('error: '))}$"):
        load_image_folder(tmp_path, cache_dir=None, channels=1)  # data=folder
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]  # nothing written


def test_one_picture_with_a_thumbnail_page_or_one_frame_is_read(tmp_path: Path) -> None:
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tiff:
        tiff.write(PICTURE)
        tiff.write(PICTURE[::4, ::4], subfiletype=1)  # a reduced-resolution page
    _animated(tmp_path / "still.gif", 1)
    assert np.array_equal(read_image(tmp_path / "thumb.tif"), PICTURE)
    assert read_image(tmp_path / "still.gif").shape == PICTURE.shape


# ---------------------------------------------------------------- predict on a folder


def test_predict_counts_and_names_links_to_nothing_and_multi_page_files(
    tmp_path: Path, capsys
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(PICTURE).save(folder / "a.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "dangling.png").symlink_to("gone.png")
    _pages(folder / "pages.tif", 2)
    (folder / "sub").mkdir()  # a subfolder is no input of a folder run

    lines = user_error(predict, _predict_config(folder, out), capsys)

    assert [line for line in lines if line.startswith("error")] == [  # and the progress bar
        f"error: 1 of 4 images denoised into {out}; 3 failed: dangling.png, loop.png, pages.tif"
    ]
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]


# ------------------------------------------------------------------- init_from: growing


SMALL = {"architecture": "corruption_aware", "base_channels": 4, "depth": 3, "dropout": 0.0}
FIX = (
    "warm-start from a checkpoint of the same design and depth, at most as wide "
    "(model.net.global_context, data.channels, model.net.depth, model.net.base_channels; "
    "the experiment it was trained with sets them)"
)


@pytest.mark.parametrize(
    ("name", "shape", "wider"),
    [
        ("net.backbone.encoder.1.4.weight", (7, 7, 3, 3), {}),  # fits (8, 8, 3, 3)
        ("net.backbone.encoder.1.4.weight", (7, 7, 3, 3), {"base_channels": 8}),
        ("net.backbone.encoder.1.4.weight", (16, 7, 3, 3), {"base_channels": 8}),
        ("net.backbone.encoder.1.4.bias", (7,), {"base_channels": 8}),
        # an odd concatenated input: was an IndexError traceback
        ("net.backbone.decoder.0.conv.0.weight", (7, 15, 3, 3), {"base_channels": 8}),
        ("net.backbone.encoder.0.0.weight", (3, 3, 3, 3), {"global_context": True}),
    ],
    ids=["same-width", "wider", "one-dim-full", "bias", "odd-halves", "first-layer"],
)
def test_init_from_refuses_a_tensor_that_no_narrower_model_has(
    name: str, shape: tuple[int, ...], wider: dict, tmp_path: Path
) -> None:
    old = DenoisingModule(**SMALL)
    weights = old.state_dict()
    weights[name] = torch.randn(shape)  # smaller than the model's in every dimension
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": weights, "hyper_parameters": dict(old.hparams)}, path)
    model = DenoisingModule(**{**SMALL, **wider})
    wanted = tuple(model.state_dict()[name].shape)

    with pytest.raises(CheckpointError) as refused:
        warm_start(model, str(path))

    assert str(refused.value) == f"{path}: its {name} is {shape}; this model's is {wanted}"
    assert refused.value.fix == FIX


# ---------------------------------------------------------------- sweep job folders


@pytest.mark.parametrize(
    "text",
    ["optimized_metric=../../../../X", "a=/abs/path,b=..\\..", "x=a\x00b\x1bc", "..", "."],
)
def test_a_folder_name_is_one_name_whatever_the_values_hold(text: str, tmp_path: Path) -> None:
    name = folder_name(text)
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert not any(ord(char) < 32 or ord(char) == 127 for char in name)
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert len(folder_name(text * 100).encode()) <= MAX_FOLDER_NAME


def _sweep(tiny_csv: Path, tmp_path: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    """A debug=fast sweep into ``tmp_path/sweep``, run from a folder deep inside ``tmp_path``
    (a job folder that climbed out would land there)."""
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    command = train_command(
        tiny_csv, tmp_path, "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "trainer.accelerator=cpu", "debug=fast", "logger=none", *settings,
    )  # fmt: skip
    return run_command(command, cwd, "HYDRA_FULL_ERROR")


def _written(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_override_values_with_slashes_keep_each_job_folder_in_the_sweep(
    tiny_csv: Path, tmp_path: Path
) -> None:
    done = _sweep(tiny_csv, tmp_path, "optimized_metric=val/psnr,val/ssim")

    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = [job.folder for job in collect_jobs(sweep)]
    assert [job.parent for job in jobs] == [sweep, sweep]
    assert [job.name.split("optimized_metric=")[1].split(",")[0] for job in jobs] == [
        "val%2Fpsnr",
        "val%2Fssim",
    ]
    with (sweep / REPORT_CSV).open() as report:
        assert [row["status"] for row in csv.DictReader(report)] == ["completed", "completed"]
    outside = {name for name in _written(tmp_path) if not name.startswith(("sweep/", "cache/"))}
    assert outside == {"tiny.csv"}


@pytest.mark.slow
def test_a_value_that_climbs_out_is_one_line_and_its_job_stays_in_the_sweep(
    tiny_csv: Path, tmp_path: Path
) -> None:
    done = _sweep(tiny_csv, tmp_path, "optimized_metric=../../../../X")

    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "error: optimized_metric=../../../../X: must be one of val/loss, val/mse, val/psnr, "
        "val/ssim, val/noisy_mse, val/noisy_psnr, val/noisy_ssim, test/loss, test/mse, "
        "test/psnr, test/ssim, test/noisy_mse, test/noisy_psnr, test/noisy_ssim"
    )
    sweep = tmp_path / "sweep"
    (job,) = collect_jobs(sweep)  # what the report lists
    assert job.folder.parent == sweep and "..%2F..%2F..%2F..%2FX" in job.folder.name
    assert job_status(job).startswith("failed: optimized_metric=../../../../X: must be one of")
    outside = {name for name in _written(tmp_path) if not name.startswith("sweep/")}
    assert outside == {"tiny.csv"}  # no data read, nothing above the sweep


# ------------------------------------------------ a failed run removes only what it made


@pytest.mark.slow
@pytest.mark.parametrize(
    ("before", "run_dir", "left"),
    [
        ("pre/empty", "pre/empty/run", {"pre", "pre/empty"}),
        (None, "new/deep/run", set()),
        ("mine", "mine", {"mine"}),  # the run folder itself was there: it stays
    ],
    ids=["made-before", "none-before", "run-folder-before"],
)
def test_a_user_error_removes_only_the_folders_the_run_made(
    tmp_path: Path, before: str | None, run_dir: str, left: set[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if before:
        (work / before).mkdir(parents=True)
    command = train_command(
        tmp_path / "none.csv", tmp_path, "data.batch_size=0", f"hydra.run.dir={run_dir}"
    )

    done = run_command(command, work, "HYDRA_FULL_ERROR")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: data.batch_size=0: must be a whole number of at least 1"
    ]
    assert {path.relative_to(work).as_posix() for path in work.rglob("*")} == left


def test_without_a_record_of_what_existed_only_the_run_folder_goes(tmp_path: Path) -> None:
    run = tmp_path / "empty" / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("{}")
    (run / "train.log").write_text("")

    assert discard_run_record(run, "train.log")

    assert (tmp_path / "empty").is_dir() and not run.exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "bench"])
def test_each_command_that_removes_its_run_folder_notes_what_existed(
    command: str, compose_config
) -> None:
    callbacks = compose_config(command).hydra.callbacks
    assert callbacks.run_folder._target_ == "denoise.files.outputs.RunFolderOrigin"
