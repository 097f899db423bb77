"""The work of ``python -m denoise.add_noise`` (its usage: :mod:`denoise.add_noise`): read an
image file as predict reads it, add the training noise with a seeded generator, and write it in
the input's size, layout and pixel type."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from denoise.data.noise import Amount, add_salt_and_pepper, seeded_generator
from denoise.data.settings import noise_amount
from denoise.files.images import (
    check_input_output,
    describe,
    image_to_tensor,
    read_image,
    tensor_to_image,
    write_image,
)
from denoise.files.paths import absolute
from denoise.runtime.errors import require_settings
from denoise.runtime.settings import number_in, whole_number

log = logging.getLogger(__name__)

USAGE = "python -m denoise.add_noise input=IMAGE output=IMAGE [amount=0.1] [seed=0]"
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def noisy_arrays(
    arrays: Sequence[np.ndarray],
    amount: Amount,
    salt_vs_pepper: float = 0.5,
    seed: int | None = 0,
    per_channel: bool = True,
) -> list[np.ndarray]:
    """Noisy copies of ``arrays``, each in its own size, layout and pixel type: the noise
    ``add_noise`` and the Python API add. One generator, seeded by ``seed`` (None: a fresh
    draw), runs through them in order, so the first gets what it would alone. Without
    ``per_channel`` a hit turns the whole pixel black or white (a dead or stuck pixel)."""
    generator = None if seed is None else seeded_generator(seed)
    noisy = []
    for array in arrays:
        planes, alpha = image_to_tensor(array)
        pixel_share = 0.0 if per_channel else 1.0
        drawn = add_salt_and_pepper(planes[None], amount, salt_vs_pepper, generator, pixel_share)
        noisy.append(tensor_to_image(drawn[0], array.dtype, alpha))
    return noisy


def noisy_array(
    array: np.ndarray, amount: Amount, salt_vs_pepper: float = 0.5, seed: int | None = 0
) -> np.ndarray:
    """A noisy copy of ``array`` in its own size, layout and pixel type."""
    return noisy_arrays([array], amount, salt_vs_pepper, seed)[0]


def add_noise(cfg: DictConfig) -> Path:
    """Write a noisy copy of ``cfg.input`` to ``cfg.output``; return the output path."""
    require_settings(cfg, USAGE)
    max_pixels = whole_number(cfg, "max_pixels", optional=True)
    amount = noise_amount(cfg, "amount")
    salt_vs_pepper = number_in(cfg, "salt_vs_pepper", 0.0, 1.0)
    seed = whole_number(cfg, "seed", minimum=0)
    source, target = Path(cfg.input), Path(cfg.output)
    check_input_output(source, target)
    if target.suffix.lower() in LOSSY_SUFFIXES:
        log.warning(f"{target}: JPEG compression blurs the noise; .png keeps it exact")
    log.info(f"Adding noise to {absolute(source)} into {absolute(target)}")
    array = read_image(source, max_pixels)
    write_image(target, noisy_array(array, amount, salt_vs_pepper, seed))
    log.info(f"{source} -> {target} ({describe(array)}, amount {amount}, seed {seed})")
    log.info(f"Noisy image written to {absolute(target)}")
    return target
