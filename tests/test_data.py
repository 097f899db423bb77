"""The DataModule: splits, fixed evaluation noise, fresh training noise, embedded default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denoise.data.datamodule import FERDataModule
from denoise.data.embedded import build_embedded_frame, embedded_csv_path
from denoise.data.fer_csv import load_fer_csv


def _datamodule(csv: Path | None, tmp_path: Path, **kwargs) -> FERDataModule:
    datamodule = FERDataModule(
        csv_path=str(csv) if csv else None, cache_dir=str(tmp_path / "cache"), **kwargs
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def _noisy_split(datamodule: FERDataModule, split: str) -> torch.Tensor:
    loader = getattr(datamodule, f"{split}_dataloader")()
    return torch.cat([datamodule.on_after_batch_transfer(batch, 0)["noisy"] for batch in loader])


def test_splits_follow_usage(tiny_csv: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(tiny_csv, tmp_path, batch_size=8)
    assert {split: len(data) for split, data in datamodule.datasets.items()} == {
        "train": 64,
        "val": 16,
        "test": 16,
    }
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert batch["clean"].shape == batch["noisy"].shape == (8, 1, 48, 48)
    assert (
        batch["clean"].dtype == torch.float32
        and 0 <= batch["clean"].min() <= batch["clean"].max() <= 1
    )


def test_evaluation_noise_is_fixed_by_seed_whatever_the_batching(
    tiny_csv: Path, tmp_path: Path
) -> None:
    first = _noisy_split(_datamodule(tiny_csv, tmp_path, eval_batch_size=16), "val")
    again = _noisy_split(_datamodule(tiny_csv, tmp_path, eval_batch_size=3), "val")
    other_seed = _noisy_split(_datamodule(tiny_csv, tmp_path, noise={"seed": 99}), "val")
    assert torch.equal(first, again)
    assert not torch.equal(first, other_seed)
    corrupted = (first != _clean_split(_datamodule(tiny_csv, tmp_path), "val")).float().mean()
    assert corrupted.item() == pytest.approx(0.02, abs=0.01)


def _clean_split(datamodule: FERDataModule, split: str) -> torch.Tensor:
    loader = getattr(datamodule, f"{split}_dataloader")()
    return torch.cat([datamodule.on_after_batch_transfer(batch, 0)["clean"] for batch in loader])


def test_training_noise_is_fresh_each_epoch_and_repeatable_under_a_seed(
    tiny_csv: Path, tmp_path: Path
) -> None:
    def two_epochs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        datamodule = _datamodule(tiny_csv, tmp_path, batch_size=64, noise={"amount": 0.3})
        batch = {"clean": datamodule.datasets["train"].images}  # the same images in both epochs
        return (
            datamodule.on_after_batch_transfer(dict(batch), 0)["noisy"],
            datamodule.on_after_batch_transfer(dict(batch), 0)["noisy"],
        )

    epoch_one, epoch_two = two_epochs(seed=5)
    assert not torch.equal(epoch_one, epoch_two)
    assert torch.equal(two_epochs(seed=5)[0], epoch_one)


def test_reference_preset_shapes(tiny_csv: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(tiny_csv, tmp_path, image_size=128, channels=3, eval_batch_size=4)
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert batch["clean"].shape == batch["noisy"].shape == (4, 3, 128, 128)
    assert torch.equal(batch["clean"][:, 0], batch["clean"][:, 2])


def test_embedded_default_is_a_fer_style_csv_built_once(tmp_path: Path) -> None:
    path = embedded_csv_path(tmp_path)
    built = path.stat().st_mtime_ns
    assert embedded_csv_path(tmp_path) == path and path.stat().st_mtime_ns == built

    arrays = load_fer_csv(
        path, tmp_path, {"train": ["Training"], "val": ["PrivateTest"], "test": ["PublicTest"]}
    )
    assert arrays.images.shape[1:] == (48, 48)
    assert set(arrays.usage) == {"Training", "PrivateTest", "PublicTest"}
    assert arrays.images.std() > 20  # real picture content, not a flat fill
    train, test = arrays.select(["Training"]), arrays.select(["PublicTest"])
    assert not np.isin(
        test.reshape(len(test), -1).sum(1), train.reshape(len(train), -1).sum(1)
    ).all()


def test_embedded_default_is_deterministic() -> None:
    first, second = build_embedded_frame(), build_embedded_frame()
    assert first.equals(second)


def test_datamodule_without_csv_uses_embedded_default(tmp_path: Path) -> None:
    datamodule = _datamodule(None, tmp_path)
    assert Path(datamodule.source).parent == tmp_path / "cache" / "embedded"
    assert len(datamodule.datasets["train"]) > 1000


def test_missing_split_in_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs train, val and test"):
        FERDataModule(cache_dir=str(tmp_path), splits={"train": ["Training"]})


def test_tensors_that_are_not_batches_pass_through_unchanged(
    tiny_csv: Path, tmp_path: Path
) -> None:
    datamodule = _datamodule(tiny_csv, tmp_path)
    example = torch.rand(1, 1, 48, 48)
    assert datamodule.on_after_batch_transfer(example, 0) is example
