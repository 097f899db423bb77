"""Whether a training run's network fits its images and its memory, from the settings alone:
a depth whose deepest level is under one pixel, or a width whose weights exceed the machine,
is refused before anything is allocated (see :mod:`denoise.models.footprint`)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from denoise.data.settings import FOLDER_TARGET
from denoise.models.footprint import max_depth, training_bytes
from denoise.runtime.errors import SettingError
from denoise.runtime.memory import check_fits, gigabytes
from denoise.runtime.settings import setting

GPU_ACCELERATORS = ("gpu", "cuda")


def check_network_size(cfg: DictConfig, train_images: int | None = None) -> None:
    """``model.net.depth`` against the images it sees, then the memory of a training step:
    the weights with their gradients and Adam's state, and the activations of one image (in
    the preflight, ``train_images`` None) or of one whole batch (once the data says how many
    training images there are: a batch is at most all of them). A network without a U-Net's
    ``depth`` and ``base_channels`` (one of your own) is not estimated."""
    depth, base = setting(cfg, "model.net.depth"), setting(cfg, "model.net.base_channels")
    if not isinstance(depth, int) or not isinstance(base, int):
        return
    height, width, keys = model_input(cfg)
    names = ", ".join(key.split("=")[0] for key in keys)
    side = min(height, width)
    if depth > max_depth(side):
        raise SettingError(
            f"model.net.depth={depth}: too deep for {height}x{width} images ({names}): the deepest "
            f"level would be {side}/2^{depth - 1} pixels wide, under one; at most "
            f"model.net.depth={max_depth(side)}"
        )
    device = _training_device(cfg)
    if device is None:
        return
    batch = (
        1 if train_images is None else max(min(setting(cfg, "data.batch_size"), train_images), 1)
    )
    channels = setting(cfg, "data.channels")
    weights, activations = training_bytes(base, depth, channels, channels, height, width, batch)
    images = f"{batch} {height}x{width} images" if batch > 1 else f"one {height}x{width} image"
    if batch > 1:
        subject, fix = (
            f"data.batch_size={setting(cfg, 'data.batch_size')}",
            "use a smaller data.batch_size",
        )
    elif weights >= activations:
        subject = f"model.net.base_channels={base}, model.net.depth={depth}"
        fix = "use a smaller model.net.base_channels or model.net.depth"
    else:
        subject, fix = ", ".join(keys), f"use smaller images ({names})"
    check_fits(
        subject,
        weights + activations,
        "the network",
        f"its weights, their gradients and Adam's state: {gigabytes(weights)}; the "
        f"activations of {images}: {gigabytes(activations)}",
        fix,
        device,
    )


def model_input(cfg: DictConfig) -> tuple[int, int, list[str]]:
    """The height and width of the training images as the network sees them, and the
    settings that say so (``data.crop_size=64``)."""
    if setting(cfg, "data._target_") == FOLDER_TARGET:
        crop = setting(cfg, "data.crop_size")
        return crop, crop, [f"data.crop_size={crop}"]
    side = setting(cfg, "data.image_size")
    if side is not None:
        return side, side, [f"data.image_size={side}"]
    height, width = setting(cfg, "data.height"), setting(cfg, "data.width")
    return height, width, [f"data.height={height}", f"data.width={width}"]


def _training_device(cfg: DictConfig) -> str | None:
    """``cpu`` or ``cuda`` as ``trainer.accelerator`` resolves; None for other accelerators,
    whose free memory is not measured."""
    accelerator = str(setting(cfg, "trainer.accelerator") or "auto")
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator in GPU_ACCELERATORS:
        return "cuda"
    return "cpu" if accelerator == "cpu" else None
