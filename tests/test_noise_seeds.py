"""The noise every caller draws for a fixed seed, pinned: figures, tests and scores rest on it,
so moving or renaming the seeding rules must leave every code where it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_images
from PIL import Image

from denoise.data.datamodule import FERDataModule
from denoise.data.folder import FolderDataModule
from denoise.data.noise import PEPPER, SALT, UNTOUCHED
from denoise.data.noisy_files import noisy_array
from denoise.evaluation.scoring import NOISY, evaluate_denoisers

Hits = tuple[list[tuple[int, int]], int]


def _hits(codes: torch.Tensor, first: int = 6) -> Hits:
    """The first ``first`` corrupted elements (flat index, code) and how many there are."""
    flat = codes.flatten()
    where = torch.nonzero(flat).flatten()
    return [(int(index), int(flat[index])) for index in where[:first]], len(where)


def _codes(noisy: torch.Tensor) -> torch.Tensor:
    """The noise codes read back from a noisy picture whose clean pixels are all mid-grey."""
    return torch.where(noisy == 0, PEPPER, torch.where(noisy == 1, SALT, UNTOUCHED))


def _fer_codes(tiny_csv: Path, tmp_path: Path) -> dict[str, Hits]:
    datamodule = FERDataModule(
        csv_path=str(tiny_csv), cache_dir=str(tmp_path / "cache"), noise={"seed": 5}
    )
    datamodule.setup("fit")
    return {split: _hits(datamodule.datasets[split].codes) for split in ("val", "test")}


def _folder_codes(tmp_path: Path) -> dict[str, Hits]:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, image in enumerate(smooth_images(10, 24, 24)):
        Image.fromarray(image).save(folder / f"photo_{index}.png")
    datamodule = FolderDataModule(
        str(folder), cache_dir=str(tmp_path / "cache"), crop_size=16, noise={"amount": 0.3}
    )
    datamodule.setup("fit")
    return {split: _hits(datamodule.datasets[split].codes) for split in ("val", "test")}


def _evaluate_noise() -> dict[float, Hits]:
    clean = torch.full((3, 1, 8, 8), 0.5)
    result = evaluate_denoisers(clean, {}, [0.1, 0.5], seed=7, example_densities=[0.1, 0.5])
    return {density: _hits(_codes(images[NOISY])) for density, images in result.examples.items()}


def _add_noise_values() -> Hits:
    array = np.full((6, 5), 128, dtype=np.uint8)
    noisy = noisy_array(array, 0.3, seed=4)
    return _hits(_codes(torch.from_numpy(noisy / 255)))


def test_validation_and_test_noise_of_the_fer_data_is_pinned(
    tiny_csv: Path, tmp_path: Path
) -> None:
    assert _fer_codes(tiny_csv, tmp_path) == {
        "val": ([(184, 1), (318, 1), (332, 2), (364, 1), (384, 2), (503, 2)], 727),
        "test": ([(85, 2), (135, 1), (177, 2), (238, 2), (271, 1), (295, 1)], 776),
    }


def test_validation_and_test_noise_of_a_folder_is_pinned(tmp_path: Path) -> None:
    assert _folder_codes(tmp_path) == {
        "val": ([(9, 1), (11, 1), (14, 2), (15, 2), (17, 1), (19, 1)], 90),
        "test": ([(0, 1), (4, 1), (5, 1), (9, 1), (12, 2), (13, 1)], 71),
    }


def test_evaluate_noise_per_density_is_pinned() -> None:
    assert _evaluate_noise() == {
        0.1: ([(0, 2), (4, 1), (6, 1), (28, 2), (33, 1), (37, 1)], 22),
        0.5: ([(1, 1), (2, 1), (3, 2), (5, 2), (6, 1), (7, 2)], 97),
    }


def test_add_noise_is_pinned() -> None:
    assert _add_noise_values() == ([(1, 2), (2, 1), (3, 1), (4, 2), (10, 1), (16, 2)], 8)


def test_each_process_draws_training_noise_of_its_own(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datamodule = FERDataModule(csv_path=str(tiny_csv), cache_dir=str(tmp_path / "cache"))
    datamodule.setup("fit")
    datamodule._train_seed = 40
    monkeypatch.setattr(datamodule, "_processes", lambda: (2, 1))
    assert datamodule._train_generator(torch.device("cpu")).initial_seed() == 41
