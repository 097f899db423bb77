"""Train/validation/test splits of folders of image files (``data=folder``).

Training sees random square crops (``crop_size``), flipped and turned by quarter turns at
random, drawn afresh every time an image is asked for: images of any size train one model,
and every epoch shows new views of a small folder. Validation and test are fixed (center crops
of ``eval_crop_size``, or whole images of one size), so that they stack into one tensor, which
``denoise.evaluate`` needs, and carry noise fixed by ``noise.seed`` as the FER data does. An
image smaller than a crop is padded by reflection (mirrored at its edges).

Splits come from separate folders (``train_dir``, ``val_dir``, ``test_dir``), or a split
without a folder takes its share of ``train_dir``'s files: the sorted names are shuffled by
``split_seed``, so the split depends neither on the file system's listing order nor on the
run's ``seed``. Decoding and its cache: ``denoise/data/image_folder.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from denoise.data.datamodule import (
    SPLITS,
    Batch,
    ImageSplit,
    NoiseSettings,
    NoisyImageDataModule,
)
from denoise.data.image_folder import FolderImages, ImageFolderError, load_image_folder

log = logging.getLogger(__name__)

EVAL_CROPS = ("center", "whole")


class RandomCrops(Dataset):
    """Training crops of uint8 ``(C, H, W)`` images at least ``crop_size`` on each side: a
    new random crop, flip and quarter turn each time, from torch's global RNG (seeded by
    ``seed=`` in the main process and by PyTorch per loader worker)."""

    def __init__(
        self,
        sources: Sequence[torch.Tensor],
        crop_size: int,
        crops_per_image: int = 1,
        clipped_share: float = 0.0,
        clipped_max: float = 0.3,
        faded_share: float = 0.0,
        faded_range: int = 64,
    ) -> None:
        self.sources = list(sources)
        self.crop_size = crop_size
        self.crops_per_image = crops_per_image
        self.clipped_share = clipped_share
        self.clipped_max = clipped_max
        self.faded_share = faded_share
        self.faded_range = faded_range

    def __len__(self) -> int:
        return len(self.sources) * self.crops_per_image

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """A whole batch at once, like :class:`ImageSplit`: the loader needs no collation."""
        crops = [
            random_view(self.sources[index // self.crops_per_image], self.crop_size)
            for index in indices
        ]
        if self.clipped_share or self.faded_share:
            crops = [self._expose(crop) for crop in crops]
        return {"clean": torch.stack(crops)}

    def _expose(self, crop: torch.Tensor) -> torch.Tensor:
        """One crop over- or under-exposed (``clipped_share``), faded (``faded_share``) or
        left as it is."""
        draw = float(torch.rand(()))
        if draw < self.clipped_share:
            return clip_exposure(crop, self.clipped_max)
        if draw < self.clipped_share + self.faded_share:
            return fade(crop, self.faded_range)
        return crop


def random_view(image: torch.Tensor, size: int) -> torch.Tensor:
    """A random ``size`` square of ``image``, mirrored or not and turned by 0 to 3 quarter
    turns: the 8 symmetries of a square, none of which changes what noise looks like."""
    _, height, width = image.shape
    top = int(torch.randint(height - size + 1, ()))
    left = int(torch.randint(width - size + 1, ()))
    mirror, turns = bool(torch.randint(2, ())), int(torch.randint(4, ()))
    crop = image[:, top : top + size, left : left + size]
    if mirror:
        crop = crop.flip(-1)
    return torch.rot90(crop, turns, (-2, -1))


def clip_exposure(crop: torch.Tensor, clipped_max: float) -> torch.Tensor:
    """``crop`` (uint8) with its contrast stretched at one end until up to ``clipped_max`` of
    its pixels are pure black (under-exposed) or pure white (over-exposed), the other end
    kept: a night sky, a blown-out window.

    Why: salt-and-pepper sets pixels to exactly 0 or 255, so a model that never saw a clean
    black or white region takes it for noise. train400 has almost none (0.3% of pixels), while
    photos often do (scikit-image's astronaut: 11% pure black). One end at a time: stretching
    both makes high-contrast textures of black and white pixels side by side, where the
    model then learns to keep isolated salt on black (measured: 5% of it on the astronaut's
    sky at 10% noise)."""
    values = crop.float().flatten()
    share = float(torch.rand(())) * clipped_max
    dark_end = bool(torch.randint(2, ()))
    low = torch.quantile(values, share) if dark_end else values.min()
    high = values.max() if dark_end else torch.quantile(values, 1.0 - share)
    if high - low < 1.0:  # a flat crop: nothing to stretch
        return crop
    if dark_end:  # keep the bright end where it was: stretch towards black only
        stretched = crop.float() - (high - crop.float()) * (low / (high - low))
    else:  # keep the dark end: stretch towards white only
        stretched = crop.float() + (crop.float() - low) * ((255.0 - high) / (high - low))
    return stretched.round().clamp(0, 255).to(torch.uint8)


def fade(crop: torch.Tensor, max_range: int) -> torch.Tensor:
    """``crop`` (uint8) with its contrast squeezed into a band of 4 to ``max_range`` grey
    levels, at the dark or bright end half of the time, and with no pixel pure black or white:
    a dim room, a hazy sky, a pale wall.

    Why: train400's images span most of the grey scale, so a model trained on them alone, and
    more so one also taught by :func:`clip_exposure` that black can be genuine, keeps pepper
    in a dark smooth region that biharmonic inpainting fills almost exactly (measured on
    held-out images squeezed into 20 grey levels near black, at 95%: 39.4 against 41.9 dB).
    Here every pure black or white pixel is noise, whatever the region's brightness."""
    values = crop.float()
    low, high = values.min(), values.max()
    width = float(torch.randint(4, max(max_range, 4) + 1, ()))
    place = float(torch.rand(()))
    if place < 0.25:  # at the dark end
        start = 1.0
    elif place < 0.5:  # at the bright end
        start = 254.0 - width
    else:
        start = 1.0 + float(torch.rand(())) * (253.0 - width)
    squeezed = start + (values - low) * (width / max(float(high - low), 1.0))
    return squeezed.round().clamp(1, 254).to(torch.uint8)


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (C, H, W) grown by reflection to at least ``size`` on each side, centred."""
    _, height, width = image.shape
    grow_h, grow_w = max(0, size - height), max(0, size - width)
    if not grow_h and not grow_w:
        return image
    pads = ((0, 0), (grow_h // 2, grow_h - grow_h // 2), (grow_w // 2, grow_w - grow_w // 2))
    return np.pad(image, pads, mode="reflect")


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` square of ``image`` (C, H, W), padded by reflection if smaller."""
    image = pad_to(image, size)
    _, height, width = image.shape
    top, left = (height - size) // 2, (width - size) // 2
    return image[:, top : top + size, left : left + size]


def split_by_seed(count: int, shares: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices into ``count`` sorted files for each split of ``shares`` (``round(share *
    count)`` files, at least one) and for ``train`` (the rest), shuffled by ``seed``; each
    split's indices come back sorted, so its images keep the order of their names."""
    order = np.random.default_rng(seed).permutation(count)
    result, start = {}, 0
    for split, share in shares.items():
        taken = max(1, round(share * count))
        result[split] = np.sort(order[start : start + taken])
        start += taken
    result["train"] = np.sort(order[start:])
    return result


class FolderDataModule(NoisyImageDataModule):
    """Train/validation/test splits of folders of images: random training crops, fixed
    validation and test crops, the noise of the FER data (``NoisyImageDataModule``)."""

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        test_dir: str | None = None,
        val_share: float = 0.1,
        test_share: float = 0.1,
        split_seed: int = 0,
        recursive: bool = True,
        channels: int = 1,
        crop_size: int = 64,
        crops_per_image: int = 1,
        clipped_share: float = 0.0,
        clipped_max: float = 0.3,
        faded_share: float = 0.0,
        faded_range: int = 64,
        eval_crop: str = "center",
        eval_crop_size: int | None = None,
        cache_dir: str | None = "~/.cache/denoise",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        noise: Mapping[str, Any] | NoiseSettings | None = None,
    ) -> None:
        super().__init__(
            None, channels, batch_size, eval_batch_size, num_workers, pin_memory, noise
        )
        own = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.own_folder = {split: folder is not None for split, folder in own.items()}
        train = Path(str(train_dir)).expanduser()
        self.folders = {
            split: Path(str(folder)).expanduser() if folder is not None else train
            for split, folder in own.items()
        }
        self.shares = {
            split: share
            for split, share in (("val", val_share), ("test", test_share))
            if not self.own_folder[split]
        }
        self.split_seed = split_seed
        self.recursive = recursive
        self.crop_size = crop_size
        self.crops_per_image = crops_per_image
        self.clipped_share = clipped_share
        self.clipped_max = clipped_max
        self.faded_share = faded_share
        self.faded_range = faded_range
        if eval_crop not in EVAL_CROPS:
            raise ValueError(f"data.eval_crop={eval_crop}: must be one of {', '.join(EVAL_CROPS)}")
        self.eval_crop = eval_crop
        self.eval_crop_size = eval_crop_size or crop_size
        self.cache_dir = cache_dir
        self.split_names: dict[str, list[str]] = {}  # each split's files, relative to its folder
        self._split_images: dict[str, list[np.ndarray]] | None = None

    @property
    def splits(self) -> dict[str, list[str]]:
        """The folder each split's images come from."""
        return {split: [str(folder)] for split, folder in self.folders.items()}

    @property
    def source(self) -> str:
        """The folders the images come from, each once."""
        return ", ".join(dict.fromkeys(str(folder) for folder in self.folders.values()))

    def describe_split(self, split: str, count: int) -> str:
        """``2 center crops (64x64) of data/faces, split by file with data.split_seed=0``."""
        size = self.eval_crop_size
        what = "images" if self.eval_crop == "whole" else f"center crops ({size}x{size})"
        text = f"{count} {what} of {self.folders[split]}"
        if not self.own_folder[split] or (split == "train" and self.shares):
            text += f", split by file with data.split_seed={self.split_seed}"
        return text

    def prepare_data(self) -> None:
        """Decode (or load from the cache) every folder now: a bad file stops the run here,
        before the Trainer starts, and the cache is ready for every process."""
        self._load()

    def setup(self, stage: str | None = None) -> None:
        """Random crops for training when fitting; fixed crops everywhere else (evaluate's
        ``split=train`` scores fixed crops of the training images)."""
        if self.datasets:
            return
        images = self._load()
        for split in SPLITS:
            if split == "train" and stage in (None, "fit"):
                sources = [
                    torch.from_numpy(pad_to(image, self.crop_size)) for image in images[split]
                ]
                self.datasets[split] = RandomCrops(
                    sources,
                    self.crop_size,
                    self.crops_per_image,
                    self.clipped_share,
                    self.clipped_max,
                    self.faded_share,
                    self.faded_range,
                )
                continue
            stacked = self._fixed_crops(split, images[split])
            codes = None if split == "train" else self._fixed_codes(stacked, split)
            self.datasets[split] = ImageSplit(stacked, codes)
        sizes = ", ".join(f"{split} {len(images[split])}" for split in SPLITS)
        log.info("Data from %s: %s images", self.source, sizes)
        self._start_training_noise()

    def _load(self) -> dict[str, list[np.ndarray]]:
        """Each split's uint8 ``(C, H, W)`` images, decoded or loaded once per module."""
        if self._split_images is not None:
            return self._split_images
        self._check_folders_apart()
        loaded: dict[Path, FolderImages] = {}
        for split in SPLITS:
            folder = self.folders[split]
            if folder not in loaded:
                loaded[folder] = load_image_folder(
                    folder, self.cache_dir, self.channels, self.recursive, f"data.{split}_dir"
                )
        shared = loaded[self.folders["train"]]
        indices = self._split_shared(shared)
        result = {}
        for split in SPLITS:
            found = loaded[self.folders[split]]
            chosen = indices[split] if split in indices else range(len(found.names))
            self.split_names[split] = [found.names[index] for index in chosen]
            result[split] = [found.images[index] for index in chosen]
        self._split_images = result
        return result

    def _split_shared(self, shared: FolderImages) -> dict[str, np.ndarray]:
        """The share of ``train_dir``'s files that each split without a folder takes."""
        if not self.shares:
            return {}
        count = len(shared.names)
        if count - sum(max(1, round(share * count)) for share in self.shares.values()) < 1:
            keys = ", ".join(
                f"data.{split}_share={share:g}" for split, share in self.shares.items()
            )
            raise ImageFolderError(
                f"{shared.folder}: {count} images are too few to split off "
                f"{' and '.join(self.shares)} ({keys}) and keep some for training"
            )
        return split_by_seed(count, self.shares, self.split_seed)

    def _check_folders_apart(self) -> None:
        """A validation or test folder that is (or, read with subfolders, holds or lies in) the
        training folder would score images the model trained on."""
        train = self.folders["train"].resolve()
        for split in ("val", "test"):
            if not self.own_folder[split]:
                continue
            other = self.folders[split].resolve()
            nested = self.recursive and (other.is_relative_to(train) or train.is_relative_to(other))
            if other == train or nested:
                raise ImageFolderError(
                    f"{self.folders[split]}: data.{split}_dir overlaps data.train_dir "
                    f"({self.folders['train']}): the {split} split would score training images",
                    fix=f"give folders apart, or leave data.{split}_dir null to split off "
                    f"data.{split}_share of data.train_dir",
                )

    def _fixed_crops(self, split: str, images: list[np.ndarray]) -> torch.Tensor:
        """The split's images stacked: center crops, or whole images if all have one size."""
        if self.eval_crop == "center":
            crops = [center_crop(image, self.eval_crop_size) for image in images]
            return torch.from_numpy(np.stack(crops))
        sizes = {image.shape[1:] for image in images}
        if len(sizes) > 1:
            names = self.split_names[split]
            first = images[0].shape
            other = next(index for index, image in enumerate(images) if image.shape != first)
            raise ImageFolderError(
                f"{self.folders[split]}: data.eval_crop=whole needs {split} images of one size, "
                f"but {names[0]} is {first[2]}x{first[1]} and {names[other]} is "
                f"{images[other].shape[2]}x{images[other].shape[1]}; use data.eval_crop=center"
            )
        return torch.from_numpy(np.stack(images))
