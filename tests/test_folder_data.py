"""data=folder: folders of image files, split by seed or by folder, random training crops, fixed
validation crops and noise, the decoding cache, one-line errors, and train/evaluate end to end."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import TINY_MODEL, smooth_images, user_error
from numpy.lib.stride_tricks import sliding_window_view
from omegaconf import DictConfig
from PIL import Image

from denoise.data.datamodule import FERDataModule
from denoise.data.folder import FolderDataModule, center_crop, clip_exposure, fade, pad_to
from denoise.data.image_folder import ImageFolderError
from denoise.evaluation.scoring import evaluate
from denoise.training.run import train

HEIGHT, WIDTH = 40, 52


def _write_folder(folder: Path, count: int = 20, seed: int = 0, subfolder: int = 4) -> Path:
    """``count`` grey PNGs (the last ``subfolder`` of them in ``more/``), one colour JPEG and
    a text file that is no image."""
    (folder / "more").mkdir(parents=True)
    for index, image in enumerate(smooth_images(count, HEIGHT, WIDTH, seed)):
        where = folder / "more" if index >= count - subfolder else folder
        Image.fromarray(image).save(where / f"face_{index:02d}.png")
    colour = np.stack(list(smooth_images(3, HEIGHT, WIDTH, seed + 1)), axis=-1)
    Image.fromarray(colour).save(folder / "colour.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return _write_folder(tmp_path / "faces")


def _datamodule(train_dir: Path, tmp_path: Path, stage: str = "fit", **kwargs) -> FolderDataModule:
    settings = {"cache_dir": str(tmp_path / "cache"), "crop_size": 32, "batch_size": 8, **kwargs}
    datamodule = FolderDataModule(str(train_dir), **settings)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


def _noisy_split(datamodule: FolderDataModule, split: str) -> torch.Tensor:
    loader = getattr(datamodule, f"{split}_dataloader")()
    return torch.cat([datamodule.on_after_batch_transfer(batch, 0)["noisy"] for batch in loader])


def test_one_folder_splits_by_seed_deterministically_disjointly_whatever_the_listing_order(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _datamodule(image_folder, tmp_path).split_names
    assert {split: len(files) for split, files in names.items()} == {
        "train": 17,
        "val": 2,
        "test": 2,
    }
    everything = [name for files in names.values() for name in files]
    assert len(set(everything)) == 21 and "more/face_19.png" in everything  # recursive
    assert "notes.txt" not in everything and "colour.jpg" in everything

    walk = os.walk

    def reversed_walk(top: str, **kwargs) -> Iterator[tuple[str, list[str], list[str]]]:
        for root, folders, files in walk(top, **kwargs):
            yield root, folders, files[::-1]

    monkeypatch.setattr("denoise.data.image_folder.os.walk", reversed_walk)
    assert _datamodule(image_folder, tmp_path).split_names == names
    other_seed = _datamodule(image_folder, tmp_path, split_seed=1).split_names
    assert other_seed["val"] != names["val"]
    flat = _datamodule(image_folder, tmp_path, recursive=False).split_names
    assert sum(map(len, flat.values())) == 17  # the 4 images in more/ are not read


def test_separate_folders_give_the_splits_and_overlapping_ones_are_refused(
    tmp_path: Path,
) -> None:
    train = _write_folder(tmp_path / "train", count=6, seed=1, subfolder=0)
    val = _write_folder(tmp_path / "val", count=3, seed=2, subfolder=0)
    test = _write_folder(tmp_path / "test", count=4, seed=3, subfolder=0)
    datamodule = _datamodule(train, tmp_path, val_dir=str(val), test_dir=str(test))
    assert {split: len(files) for split, files in datamodule.split_names.items()} == {
        "train": 7,
        "val": 4,
        "test": 5,
    }
    assert datamodule.describe_split("test", 5) == f"5 center crops (32x32) of {test}"
    assert datamodule.source == f"{train}, {val}, {test}"
    with pytest.raises(ImageFolderError, match=r"data\.val_dir overlaps data\.train_dir"):
        _datamodule(tmp_path, tmp_path, val_dir=str(val), test_dir=str(test))


def _views(crop: torch.Tensor, source: torch.Tensor) -> set[tuple[int, int, bool, int]]:
    """Every (top, left, mirror, quarter turns) that turns a window of ``source`` into ``crop``
    (numpy: torch's threads crawl on a busy machine)."""
    size = crop.shape[-1]
    windows = sliding_window_view(source.numpy(), (size, size), axis=(1, 2))
    found = set()
    for mirror in (False, True):
        for turns in range(4):
            window = np.rot90(crop.numpy(), -turns, axes=(-2, -1))
            window = window[..., ::-1] if mirror else window
            match = (windows == window[:, None, None]).all(axis=(0, 3, 4))
            found |= {(top, left, mirror, turns) for top, left in np.argwhere(match).tolist()}
    return found


def test_training_crops_are_random_views_of_the_configured_size_new_each_epoch(
    image_folder: Path, tmp_path: Path
) -> None:
    datamodule = _datamodule(image_folder, tmp_path, crops_per_image=2)
    crops = datamodule.datasets["train"]
    assert len(crops) == 34
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert batch["clean"].shape == batch["noisy"].shape == (8, 1, 32, 32)
    assert not torch.equal(batch["clean"], batch["noisy"])

    torch.manual_seed(0)
    epoch_one = crops.__getitems__(range(len(crops)))["clean"]
    epoch_two = crops.__getitems__(range(len(crops)))["clean"]
    assert not torch.equal(epoch_one, epoch_two)
    torch.manual_seed(0)
    assert torch.equal(crops.__getitems__(range(len(crops)))["clean"], epoch_one)

    source = crops.sources[0]
    views = [_views(crop, source) for crop in crops.__getitems__([0] * 40)["clean"]]
    assert all(views)  # each crop is a window of its image, mirrored and turned
    assert len({min(found)[:2] for found in views}) > 5
    assert len({min(found)[2:] for found in views}) > 2


def test_exposure_clipping_makes_pure_black_and_white_regions_in_its_share_of_crops(
    image_folder: Path, tmp_path: Path
) -> None:
    crop = torch.from_numpy(smooth_images(1, 64, 64)[0][None].copy())
    assert (crop == 0).sum() + (crop == 255).sum() == 0
    torch.manual_seed(0)
    shares, sides = [], []
    for _ in range(20):
        clipped = clip_exposure(crop, 0.3)
        black, white = (clipped == 0).float().mean(), (clipped == 255).float().mean()
        assert black <= 0.3 + 1 / 64 and white <= 0.3 + 1 / 64
        assert black == 0 or white == 0  # one end at a time
        kept = crop.min() if white else crop.max()
        assert (clipped == kept).sum() == (crop == kept).sum()  # the other end stays put
        order = torch.argsort(crop.flatten().float(), stable=True)
        assert torch.all(clipped.flatten()[order].diff() >= 0)  # brightness order is kept
        shares.append(float(black + white))
        sides.append(bool(white))
    assert max(shares) > 0.2 and min(shares) < max(shares)
    assert len(set(sides)) == 2  # both ends over 20 draws
    flat = torch.full((1, 8, 8), 90, dtype=torch.uint8)
    assert torch.equal(clip_exposure(flat, 0.3), flat)

    plain = _datamodule(image_folder, tmp_path, crop_size=32, crops_per_image=4)
    exposed = _datamodule(
        image_folder, tmp_path, crop_size=32, crops_per_image=4, clipped_share=0.5
    )
    plain_crops = plain.datasets["train"].__getitems__(range(68))["clean"]
    exposed_crops = exposed.datasets["train"].__getitems__(range(68))["clean"]
    saturated = [
        ((crops == 0) | (crops == 255)).flatten(1).float().mean(1) > 0.01
        for crops in (plain_crops, exposed_crops)
    ]
    assert saturated[0].sum() == 0
    assert 15 < saturated[1].sum() < 53  # about half of 68


def test_fading_squeezes_crops_into_a_narrow_band_with_no_pure_black_or_white(
    image_folder: Path, tmp_path: Path
) -> None:
    crop = torch.from_numpy(smooth_images(1, 64, 64)[0][None].copy())
    crop[0, 0, :8] = 0  # genuine black and white in the source: gone once faded
    crop[0, 1, :8] = 255
    torch.manual_seed(0)
    widths, lows = [], []
    for _ in range(40):
        faded = fade(crop, 40)
        low, high = int(faded.min()), int(faded.max())
        assert low >= 1 and high <= 254
        assert high - low <= 40
        order = torch.argsort(crop.flatten().float(), stable=True)
        assert torch.all(faded.flatten()[order].diff() >= 0)  # brightness order is kept
        widths.append(high - low)
        lows.append(low)
    assert min(widths) < 20 and max(widths) > 30
    assert min(lows) == 1 and max(lows) > 200  # at the dark end, the bright end and between

    faded_module = _datamodule(
        image_folder, tmp_path, crop_size=32, crops_per_image=4, faded_share=0.5, faded_range=16
    )
    crops = faded_module.datasets["train"].__getitems__(range(68))["clean"].flatten(1).int()
    narrow = (crops.amax(1) - crops.amin(1)) <= 16
    assert 15 < narrow.sum() < 53  # about half of 68; the plain crops span far more


def test_images_smaller_than_a_crop_are_padded_by_reflection(tmp_path: Path) -> None:
    small = smooth_images(1, 20, 24)[0]
    folder = tmp_path / "small"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(small).save(folder / name)
    datamodule = _datamodule(folder, tmp_path, val_share=0.3, test_share=0.3)
    grown = pad_to(small[None], 32)
    np.testing.assert_array_equal(grown, np.pad(small[None], ((0, 0), (6, 6), (4, 4)), "reflect"))
    assert datamodule.datasets["train"].__getitems__([0])["clean"].shape == (1, 1, 32, 32)
    val = datamodule.datasets["val"].images
    assert val.shape == (1, 1, 32, 32)
    np.testing.assert_array_equal(val[0, 0, 6:26, 4:28].numpy(), small)
    np.testing.assert_array_equal(center_crop(small[None], 16)[0], small[2:18, 4:20])


def test_validation_crops_and_noise_are_fixed_by_the_seed(
    image_folder: Path, tmp_path: Path
) -> None:
    datamodule = _datamodule(image_folder, tmp_path, eval_batch_size=1)
    first = _noisy_split(datamodule, "val")
    assert first.shape == (2, 1, 32, 32)
    assert torch.equal(first, _noisy_split(datamodule, "val"))  # the next epoch
    again = _datamodule(image_folder, tmp_path, eval_batch_size=8)
    assert torch.equal(first, _noisy_split(again, "val"))
    other_seed = _datamodule(image_folder, tmp_path, noise={"seed": 7})
    assert not torch.equal(first, _noisy_split(other_seed, "val"))
    name = datamodule.split_names["val"][0]
    clean = np.asarray(Image.open(image_folder / name).convert("L"))[None]
    np.testing.assert_array_equal(datamodule.datasets["val"].images[0], center_crop(clean, 32))


def test_whole_images_need_one_size(image_folder: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(image_folder, tmp_path, eval_crop="whole", stage="test")
    assert datamodule.datasets["val"].images.shape == (2, 1, HEIGHT, WIDTH)
    assert datamodule.datasets["train"].images.shape == (17, 1, HEIGHT, WIDTH)  # evaluate's
    Image.fromarray(smooth_images(1, 30, 30)[0]).save(image_folder / "more" / "odd.png")
    with pytest.raises(ImageFolderError, match=r"is 30x30; use data\.eval_crop=center$"):
        _datamodule(image_folder, tmp_path, eval_crop="whole", stage="test")


def test_colour_or_grey_by_channels(image_folder: Path, tmp_path: Path) -> None:
    other = _write_folder(tmp_path / "other", count=2, subfolder=0)
    images = {}
    for channels in (1, 3):
        datamodule = _datamodule(other, tmp_path, channels=channels, val_dir=str(image_folder))
        val = zip(datamodule.split_names["val"], datamodule.datasets["val"].images, strict=True)
        images[channels] = dict(val)
    colour, face = images[3]["colour.jpg"], images[3]["face_00.png"]
    assert colour.shape == face.shape == (3, 32, 32)
    assert not torch.equal(colour[0], colour[1]) and torch.equal(face[0], face[2])
    as_l = np.asarray(Image.open(image_folder / "colour.jpg").convert("L"))[None]
    assert images[1]["colour.jpg"].shape == (1, 32, 32)
    np.testing.assert_array_equal(images[1]["colour.jpg"], center_crop(as_l, 32))


def test_decoded_images_are_cached_and_decoded_again_when_a_file_changes(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = PIL.Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    first = _datamodule(image_folder, tmp_path)
    assert len(opened) == 2 * 21  # each file's header (the memory it will need), then decoded
    assert len(list((tmp_path / "cache" / "folders").glob("faces.*.npz"))) == 1
    second = _datamodule(image_folder, tmp_path)
    assert len(opened) == 2 * 21  # the second run opens nothing
    assert torch.equal(first.datasets["val"].images, second.datasets["val"].images)

    os.utime(image_folder / "face_03.png", ns=(1, 1))
    _datamodule(image_folder, tmp_path)
    assert len(opened) == 4 * 21


@pytest.fixture
def folder_config(
    compose_train: Callable[..., DictConfig], image_folder: Path
) -> Callable[..., DictConfig]:
    """A tiny one-epoch training config over ``image_folder``, plus ``overrides``."""

    def _compose(*overrides: str) -> DictConfig:
        return compose_train(
            "data=folder",
            f"data.train_dir={image_folder}",
            "data.crop_size=32",
            "data.batch_size=8",
            *TINY_MODEL,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "logger=none",
            *overrides,
        )

    return _compose


def test_bad_folders_and_files_stop_training_with_one_line(
    folder_config: Callable[..., DictConfig], image_folder: Path, tmp_path: Path, capsys
) -> None:
    empty, texts, mixed = tmp_path / "empty", tmp_path / "texts", tmp_path / "mixed"
    empty.mkdir()
    texts.mkdir()
    (texts / "a.txt").write_text("a")
    (texts / "b.csv").write_text("b")
    _write_folder(mixed, count=4, subfolder=0)
    Image.fromarray(smooth_images(1, 30, 30)[0]).save(mixed / "odd.png")
    (image_folder / "more" / "broken.png").write_bytes(b"these are no pixels")
    lines = user_error(train, folder_config(), capsys)
    assert lines == [
        f"error: {image_folder / 'more' / 'broken.png'}: not an image file "
        "(not PNG, JPEG, BMP or TIFF data)"
    ]
    assert not (tmp_path / "cache" / "folders").exists()  # no cache of a bad folder
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before the Trainer
    (image_folder / "more" / "broken.png").unlink()

    cases = [
        (["data.train_dir=null"], "error: data.train_dir: missing; data=folder needs a folder"),
        ([f"data.train_dir={tmp_path / 'nope'}"], f"error: {tmp_path / 'nope'}: no such folder"),
        (
            [f"data.train_dir={empty}"],
            f"error: {empty}: no image files in it or its subfolders: it holds no files",
        ),
        (
            [f"data.train_dir={texts}", "data.recursive=false"],
            f"error: {texts}: no image files in it (subfolders not read), only 2 other files",
        ),
        (
            [f"data.val_dir={mixed}", "data.eval_crop=whole"],
            f"error: {mixed}: data.eval_crop=whole needs val images of one size, but",
        ),
        (["data.channels=2"], "error: data.channels=2: must be 1 (grey) or 3 (RGB)"),
        (["data.test_share=0"], "error: data.test_share=0: the test split would be empty;"),
        (["data.clipped_share=2"], "error: data.clipped_share=2: must be a number in [0, 1]"),
        (
            ["data.clipped_share=0.6", "data.faded_share=0.5"],
            "error: data.clipped_share=0.6 and data.faded_share=0.5: shares of the same crops;",
        ),
        (["data.faded_range=2"], "error: data.faded_range=2: must be"),
    ]
    for overrides, start in cases:
        lines = user_error(train, folder_config(*overrides), capsys)
        assert lines[0].startswith(start), (overrides, lines)
        assert len(lines) <= 2


@pytest.mark.slow
def test_train_on_a_folder_end_to_end(
    folder_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    value = train(folder_config())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert value == pytest.approx(summary["best_epoch"]["val/psnr"])
    assert len(summary["val_history"]) == 1 and summary["epochs_completed"] == 1
    assert {"test/psnr", "test/noisy_psnr", "test/ssim"} <= set(summary["test"])
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_evaluate_on_a_folder(compose_config, image_folder: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        "evaluate",
        "data=folder",
        f"data.train_dir={image_folder}",
        "weights=faces",  # the face model: this test checks the data, not which model
        "data.channels=3",  # colour images: the grey face model restores each channel
        "data.eval_crop_size=32",
        "split=val",
        "limit=2",
        "densities=[0.3]",
        "example_densities=[]",
        "amf_max_window=7",
        "device=cpu",
        output_dir=tmp_path / "evaluation",
    )
    result = evaluate(cfg)
    saved = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert saved["images"] == 2 and saved["data"] == str(image_folder)
    assert saved["title"].startswith(
        f"val split (2 center crops (32x32) of {image_folder}, split by file with "
        "data.split_seed=0), colour, noise seed 1234"
    )
    psnr = result.frame().set_index(["method", "density"])["psnr"]
    assert psnr["corruption-aware U-Net (per channel)", 0.3] > psnr["noisy input", 0.3] + 10


def test_fer_titles_are_unchanged(tiny_csv: Path, tmp_path: Path) -> None:
    datamodule = FERDataModule(csv_path=str(tiny_csv), cache_dir=str(tmp_path))
    assert datamodule.describe_split("test", 16) == f"PublicTest, 16 images of {tiny_csv}"
