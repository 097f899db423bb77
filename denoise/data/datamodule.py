"""Datasets and the LightningDataModules' shared base: clean images in memory, noise added on
the fly (``FERDataModule`` here, ``FolderDataModule`` in ``denoise/data/folder.py``).

Images stay uint8 in memory and whole batches are gathered with one indexing op.
Training noise is drawn fresh for every batch on the batch's device; validation and
test noise is drawn once from ``noise.seed``, so every epoch and every run scores the
same noisy images whatever the batch size or worker count.

In a distributed run each process validates and tests its own contiguous share of a split,
every image exactly once (:class:`EvaluationShard`), with the same fixed noise (the codes
belong to the images, drawn for the whole split), and draws training noise of its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from denoise.data.embedded import embedded_csv_path
from denoise.data.fer_csv import load_fer_csv
from denoise.data.noise import (
    Amount,
    apply_salt_and_pepper,
    check_amount,
    fixed_noise_codes,
    flatten_some,
    process_seed,
    sample_salt_and_pepper,
    seeded_generator,
    split_seed,
)
from denoise.runtime.memory import check_fits

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_SPLITS = {"train": ["Training"], "val": ["PrivateTest"], "test": ["PublicTest"]}
Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class NoiseSettings:
    """Salt-and-pepper settings: ``amount`` is a fraction or a ``[low, high]`` range per image.

    ``clean_share``, ``flat_share`` and ``density_power`` shape training only (validation
    and test keep the plain ``amount``): the share of training images left noise-free, the
    share replaced by all-black or all-white images, and how much more often low densities
    of a range are drawn. ``pixel_share`` (every split) is the share of colour images whose
    noise hits all channels of a pixel at once rather than each channel on its own.
    """

    amount: Amount = 0.02
    salt_vs_pepper: float = 0.5
    seed: int = 1234
    clean_share: float = 0.0
    flat_share: float = 0.0
    density_power: float = 1.0
    pixel_share: float = 0.0

    def __post_init__(self) -> None:
        check_amount(self.amount)


class ImageSplit(Dataset):
    """uint8 images ``(N, C, H, W)``, optionally with fixed noise codes at model resolution."""

    def __init__(self, images: torch.Tensor, codes: torch.Tensor | None = None) -> None:
        self.images = images
        self.codes = codes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """Gather a whole batch in one indexing op instead of collating single images."""
        index = torch.as_tensor(indices)
        batch = {"clean": self.images[index]}
        if self.codes is not None:
            batch["codes"] = self.codes[index]
        return batch


class EvaluationShard(DistributedSampler):
    """Process ``rank``'s contiguous share of an evaluation split, for ``num_replicas``
    processes: every image exactly once over all processes, the shares differing by one
    image at most, rank zero's first (so its first batch, the one previewed, shows the
    split's first images, as in a one-process run).

    Lightning's own ``DistributedSampler`` would pad the split with repeated images to give
    every process as many, and so count those images twice in the epoch's mean. Being a
    ``DistributedSampler``, this one is left in place by Lightning."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        size, extra = divmod(len(dataset), num_replicas)
        self.start = rank * size + min(rank, extra)
        self.num_samples = size + (1 if rank < extra else 0)
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.start + self.num_samples))


def keep_batch(batch: Batch) -> Batch:
    """Collate function for datasets that already return whole batches."""
    return batch


def to_model_input(images: torch.Tensor, image_size: int | None, channels: int) -> torch.Tensor:
    """uint8 ``(N, 1, H, W)`` to float in [0, 1], resized to ``image_size`` and repeated to
    ``channels`` (the reference setup feeds 128x128 RGB copies of the 48x48 faces)."""
    images = images.float().div_(255.0)
    if image_size is not None and images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear")
        images = images.clamp_(0.0, 1.0)
    if channels != images.shape[1]:
        images = images.expand(-1, channels, -1, -1).contiguous()
    return images


class NoisyImageDataModule(L.LightningDataModule):
    """What every data source shares once its clean uint8 images are in memory: the loaders,
    fixed validation/test noise, fresh training noise on the batch's device.

    Subclasses fill ``self.datasets`` (``train``, ``val``, ``test``) in ``setup``, give the
    val/test splits their codes with :meth:`_fixed_codes` and end ``setup`` with
    :meth:`_start_training_noise`; ``source`` and :meth:`describe_split` say where the
    images come from (``denoise.evaluate`` prints them).
    """

    def __init__(
        self,
        image_size: int | None = None,
        channels: int = 1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        noise: Mapping[str, Any] | NoiseSettings | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        if not isinstance(noise, NoiseSettings):
            noise = NoiseSettings(**(noise or {}))
        self.noise = noise
        self.datasets: dict[str, Dataset] = {}
        self._train_seed: int | None = None
        self._train_generators: dict[torch.device, torch.Generator] = {}

    @property
    def source(self) -> str:
        """Where the images come from (a file, folders), for logs and evaluation reports."""
        raise NotImplementedError

    def describe_split(self, split: str, count: int) -> str:
        """``count`` images of ``split`` in words, for evaluation titles."""
        raise NotImplementedError

    def _start_training_noise(self) -> None:
        """Drawn from the global RNG, so `seed=` makes the training noise repeatable."""
        self._train_seed = int(torch.randint(2**62, (1,)).item())

    def _fixed_codes(self, images: torch.Tensor, split: str) -> torch.Tensor:
        """Noise codes for a validation or test split, the same in every epoch and run."""
        side = self.image_size
        shape = (self.channels, side or images.shape[-2], side or images.shape[-1])
        needed = len(images) * math.prod(shape)  # one byte per pixel
        check_fits(
            self.source,
            needed,
            "fixing the noise of its validation and test images",
            f"{len(images)} noise codes of {'x'.join(map(str, shape))}, one byte per pixel",
            "use smaller images (data.image_size)",
        )
        noise = self.noise
        seed = split_seed(noise.seed, split)
        return fixed_noise_codes(
            len(images), shape, noise.amount, noise.salt_vs_pepper, seed, noise.pixel_share
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = None
        processes, rank = self._processes()
        if split != "train" and processes > 1:  # training: Lightning's DistributedSampler
            sampler = EvaluationShard(self.datasets[split], processes, rank)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=keep_batch,
        )

    def _processes(self) -> tuple[int, int]:
        """The number of processes of the attached Trainer and this one's global rank."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Turn a uint8 batch into ``{"clean", "noisy"}`` floats on the training device;
        anything else (a model-summary example, a tensor to denoise) passes unchanged."""
        return self.make_pair(batch) if isinstance(batch, dict) else batch

    def make_pair(self, batch: Batch) -> Batch:
        """Clean and noisy model inputs: fixed noise where the batch carries codes, else fresh."""
        clean = to_model_input(batch["clean"], self.image_size, self.channels)
        codes = batch.get("codes")
        if codes is None:
            generator = self._train_generator(clean.device)
            clean = flatten_some(clean, self.noise.flat_share, generator)
            codes = sample_salt_and_pepper(
                clean.shape,
                self.noise.amount,
                self.noise.salt_vs_pepper,
                generator,
                clean_share=self.noise.clean_share,
                density_power=self.noise.density_power,
                pixel_share=self.noise.pixel_share,
            )
        return {"clean": clean, "noisy": apply_salt_and_pepper(clean, codes)}

    def _train_generator(self, device: torch.device) -> torch.Generator:
        """Seeded once per device; in a distributed run each process offsets the seed by its
        rank, so that the processes' batches do not all get the same noise."""
        if device not in self._train_generators:
            seed = self._train_seed if self._train_seed is not None else self.noise.seed
            seed = process_seed(seed, self._processes()[1])
            self._train_generators[device] = seeded_generator(seed, device)
        return self._train_generators[device]


class FERDataModule(NoisyImageDataModule):
    """Train/validation/test splits of a FER-style CSV (or of the embedded default data)."""

    def __init__(
        self,
        csv_path: str | None = None,
        cache_dir: str | None = "~/.cache/denoise",
        height: int = 48,
        width: int = 48,
        image_size: int | None = None,
        channels: int = 1,
        splits: Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        noise: Mapping[str, Any] | NoiseSettings | None = None,
    ) -> None:
        super().__init__(
            image_size, channels, batch_size, eval_batch_size, num_workers, pin_memory, noise
        )
        self.csv_path = csv_path
        self.cache_dir = cache_dir
        self.height, self.width = height, width
        self.splits = {name: list(values) for name, values in (splits or DEFAULT_SPLITS).items()}
        missing = {"train", "val", "test"} - self.splits.keys()
        if missing:
            raise ValueError(f"data.splits needs train, val and test; missing {sorted(missing)}")

    @property
    def source(self) -> str:
        """The CSV the data comes from, building the embedded default on first use."""
        if self.csv_path:
            return str(self.csv_path)
        if not self.cache_dir:
            raise ValueError("the embedded default data needs data.cache_dir")
        return str(embedded_csv_path(self.cache_dir, self.height))

    def describe_split(self, split: str, count: int) -> str:
        """``PublicTest, 16 images of faces.csv``: the Usage values the split takes."""
        return f"{'/'.join(self.splits[split])}, {count} images of {self.source}"

    def prepare_data(self) -> None:
        """Build the embedded CSV once (Lightning calls this on one process only)."""
        _ = self.source

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        arrays = load_fer_csv(self.source, self.cache_dir, self.splits, self.height, self.width)
        for split in SPLITS:
            images = torch.from_numpy(np.ascontiguousarray(arrays.select(self.splits[split])))
            images = images.unsqueeze(1)
            codes = None if split == "train" else self._fixed_codes(images, split)
            self.datasets[split] = ImageSplit(images, codes)
        sizes = ", ".join(f"{split} {len(data)}" for split, data in self.datasets.items())
        log.info("Data from %s: %s images", self.source, sizes)
        self._start_training_noise()
