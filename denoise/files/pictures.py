"""Pictures as code holds them — a NumPy array, a PIL image, a torch tensor — turned into the
arrays :func:`~denoise.files.images.read_image` returns, and back into the type, layout and
device they came in. The Python API (:mod:`denoise.inference.api`) restores and adds noise
through these, so that each kind of picture is checked and converted in one place; a
picture that cannot work is a ``TypeError`` or a :class:`PictureError` (a ``ValueError``) that
says what is accepted, never a shape error from inside torch.

* NumPy: ``H×W`` or ``H×W×C`` (grey, grey+alpha, RGB, RGBA), ``uint8``, ``uint16`` or float
  in [0, 1]; float pictures are grey or RGB only: code computes colour, not alpha, in floats,
  and a float array of 2 or 4 channels is more often a mix-up than an alpha plane.
* PIL: read as ``predict`` reads a file of that mode (:func:`~denoise.files.images.pillow_pixels`)
  and given back in the mode ``predict`` would write (``P`` comes back RGB).
* torch: ``C×H×W`` or ``N×C×H×W`` float in [0, 1] with 1 or 3 channels, given back on its
  device in its dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from denoise.files.images import LAYOUTS, pillow_pixels
from denoise.runtime.errors import UserError

# Constrained, not bound: a function taking one returns that same type to an editor.
Picture = TypeVar("Picture", np.ndarray, Image.Image, torch.Tensor)
Pack = Callable[[list[np.ndarray]], Picture]

MIN_SIDE = 2  # a pixel is restored from its neighbours; a 1-pixel side is a layout mix-up
INTEGER_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
FLOAT_CHANNELS = (1, 3)
PIL_NAME = "<PIL image>"  # how pillow_pixels' warnings name an image without a file
PICTURE_NAME = "the picture"  # how a message names a picture that has no file
ACCEPTED = (
    "a NumPy array (H×W or H×W×C: uint8, uint16, or float in [0, 1]), a PIL image, "
    "or a torch tensor (C×H×W or N×C×H×W, float in [0, 1])"
)


class PictureError(UserError, ValueError):
    """A picture the API cannot restore: what was wrong, and what is accepted (a fix, where
    given, is part of the message: code reads ``str(error)``)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(f"{message}; {fix}" if fix else message)


def unpack(picture: Picture) -> tuple[list[np.ndarray], Pack[Picture]]:
    """``picture`` as checked arrays in :func:`read_image`'s layouts (one, or one per image of
    a batch), and the function that turns arrays of those layouts back into its own type."""
    if isinstance(picture, np.ndarray):
        return [_checked_array(picture)], _numpy_packer(picture)
    if isinstance(picture, Image.Image):
        return [_checked_array(pillow_pixels(picture, PIL_NAME), "PIL image")], _pil_packer
    if isinstance(picture, torch.Tensor):
        return _tensor_arrays(picture), _tensor_packer(picture)
    raise TypeError(f"a picture of type {type(picture).__name__}: use {ACCEPTED}")


def _numpy_packer(picture: np.ndarray) -> Pack[np.ndarray]:
    def pack(arrays: list[np.ndarray]) -> np.ndarray:
        return arrays[0].reshape(picture.shape)  # H×W×1 stays H×W×1

    return pack


def _pil_packer(arrays: list[np.ndarray]) -> Image.Image:
    return Image.fromarray(arrays[0])


def _tensor_packer(picture: torch.Tensor) -> Pack[torch.Tensor]:
    def pack(arrays: list[np.ndarray]) -> torch.Tensor:
        planes = [torch.from_numpy(array).reshape(*array.shape[:2], -1) for array in arrays]
        batch = torch.stack(planes).permute(0, 3, 1, 2)  # N×H×W×C to N×C×H×W
        batch = batch.to(device=picture.device, dtype=picture.dtype)
        return batch if picture.dim() == 4 else batch[0]

    return pack


def _tensor_arrays(picture: torch.Tensor) -> list[np.ndarray]:
    """Each image of a ``C×H×W`` or ``N×C×H×W`` tensor as an ``H×W[×C]`` float32 array."""
    if picture.dim() not in (3, 4):
        raise PictureError(
            f"a tensor of shape {tuple(picture.shape)}: a torch picture is C×H×W or N×C×H×W "
            "(for one H×W plane, use picture[None])"
        )
    if not picture.is_floating_point():
        raise TypeError(
            f"a {picture.dtype} tensor: torch pictures are float in [0, 1] "
            "(for 8-bit values, use picture / 255)"
        )
    batch = picture.detach().to("cpu", torch.float32)
    batch = batch if picture.dim() == 4 else batch[None]
    if not len(batch):
        raise PictureError(
            f"an empty batch of shape {tuple(picture.shape)}: give one image or more"
        )
    channels = batch.shape[1]
    if channels not in FLOAT_CHANNELS:
        raise PictureError(
            f"a tensor of shape {tuple(picture.shape)} has {channels} channels: torch pictures "
            "have 1 (grey) or 3 (RGB) channels first, C×H×W or N×C×H×W"
        )
    layout = batch.permute(0, 2, 3, 1).numpy()
    return [_checked_array(image[..., 0] if channels == 1 else image) for image in layout]


def _checked_array(array: np.ndarray, kind: str = "array") -> np.ndarray:
    """``array`` if it is a picture of :data:`ACCEPTED` layouts, pixel types and values."""
    shape = tuple(array.shape)
    if array.size == 0:
        raise PictureError(f"an empty {kind} of shape {shape}: a picture has pixels")
    if array.dtype.kind != "f" and array.dtype not in INTEGER_TYPES:
        raise TypeError(
            f"an {kind} of {array.dtype} pixels: use uint8 or uint16 "
            "(e.g. array.astype(np.uint8)), or float in [0, 1]"
        )
    channels = 1 if array.ndim == 2 else shape[-1] if array.ndim == 3 else None
    if channels not in LAYOUTS:
        hint = " (C×H×W? NumPy pictures are H×W×C: array.transpose(1, 2, 0))" * (
            array.ndim == 3 and shape[0] in LAYOUTS
        )
        raise PictureError(
            f"an {kind} of shape {shape}: a picture is H×W or H×W×C with C = 1 (grey), "
            f"2 (grey+alpha), 3 (RGB) or 4 (RGBA){hint}"
        )
    if min(shape[:2]) < MIN_SIDE:
        raise PictureError(
            f"a {shape[1]}×{shape[0]} picture: pictures of at least "
            f"{MIN_SIDE}×{MIN_SIDE} pixels are restored (is the layout H×W×C?)"
        )
    if array.dtype.kind == "f":
        _check_float(array, kind, shape, channels)
    return array


def _check_float(array: np.ndarray, kind: str, shape: tuple[int, ...], channels: int) -> None:
    if channels not in FLOAT_CHANNELS:
        raise PictureError(
            f"a float {kind} with {channels} channels {shape}: float pictures are grey or RGB "
            "(alpha is kept for uint8 and uint16 pictures; or restore array[..., :3])"
        )
    if np.isnan(array).any():
        raise PictureError(f"a float {kind} holding NaN: float pixels are numbers in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if not 0.0 <= low <= high <= 1.0:
        raise PictureError(
            f"a float {kind} with values from {low:g} to {high:g}: float pixels lie in [0, 1] "
            "(for 8-bit values, use array / 255, or pass them as uint8)"
        )
