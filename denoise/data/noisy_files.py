"""The work of ``python -m denoise.add_noise`` (its usage: :mod:`denoise.add_noise`): read an
image file as predict reads it, add the training noise with a seeded generator, and write it in
the input's size, layout and pixel type."""

from __future__ import annotations

import logging
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
from denoise.files.outputs import absolute
from denoise.runtime.errors import require_settings
from denoise.runtime.settings import number_in, whole_number

log = logging.getLogger(__name__)

USAGE = "python -m denoise.add_noise input=IMAGE output=IMAGE [amount=0.1] [seed=0]"
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def noisy_array(
    array: np.ndarray, amount: Amount, salt_vs_pepper: float = 0.5, seed: int = 0
) -> np.ndarray:
    """A noisy copy of ``array`` in its own size, layout and pixel type."""
    planes, alpha = image_to_tensor(array)
    noisy = add_salt_and_pepper(planes[None], amount, salt_vs_pepper, seeded_generator(seed))[0]
    return tensor_to_image(noisy, array.dtype, alpha)


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
