"""Salt-and-pepper noise on batched image tensors in [0, 1], driven by a torch.Generator.

Noise is drawn as a code per element (0 untouched, 1 pepper, 2 salt) so that the same
corruption can be stored compactly, re-applied to a differently prepared clean image,
and used as the true corruption mask.

Every seeded draw starts from :func:`seeded_generator`, its seed given by one of the rules
here (:func:`split_seed`, :func:`density_seed`, :func:`process_seed`), so that the noise a
run, an evaluation or ``add_noise`` draws is decided in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

UNTOUCHED, PEPPER, SALT = 0, 1, 2
FIXED_NOISE_SPLITS = {"val": 1, "test": 2}  # each one's offset from noise.seed; train's is fresh
NOISE_CHUNK = 1024  # images per draw of fixed noise: the codes never depend on batch sizes

Amount = float | Sequence[float]


def seeded_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A generator of its own: seeded noise neither depends on nor disturbs torch's global RNG."""
    return torch.Generator(device).manual_seed(seed)


def split_seed(seed: int, split: str) -> int:
    """One seed per split (``val``, ``test``), so validation and test images get different
    noise, each fixed by ``noise.seed`` whatever the other split holds."""
    return seed + FIXED_NOISE_SPLITS[split]


def density_seed(seed: int, density: float) -> int:
    """One seed per density, so adding or dropping densities leaves the others' noise alone."""
    return seed + round(density * 1_000_000)


def process_seed(seed: int, rank: int) -> int:
    """One seed per process of a distributed run, so the processes' training batches do not
    all get the same noise."""
    return seed + rank


def check_amount(amount: Amount) -> tuple[float, float]:
    """Return ``amount`` as a ``(low, high)`` range, rejecting values outside [0, 1]."""
    if isinstance(amount, int | float):
        low = high = float(amount)
    else:
        values = [float(value) for value in amount]
        if len(values) != 2:
            raise ValueError(f"noise amount must be a number or a [low, high] pair, got {amount!r}")
        low, high = values
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"noise amount must lie in [0, 1] with low <= high, got {amount!r}")
    return low, high


def sample_salt_and_pepper(
    shape: Sequence[int],
    amount: Amount,
    salt_vs_pepper: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    clean_share: float = 0.0,
    density_power: float = 1.0,
    pixel_share: float = 0.0,
) -> torch.Tensor:
    """Draw uint8 noise codes for a batch of shape ``(N, C, H, W)``.

    Each element is corrupted with probability ``amount``; a ``[low, high]`` amount is
    drawn uniformly once per image, so one batch mixes noise levels. A corrupted
    element becomes salt with probability ``salt_vs_pepper``. A ``clean_share`` of the
    images is left untouched (density exactly 0, which a continuous range never draws):
    a blind model must learn that clean input exists. ``density_power`` above 1 draws
    the low densities of a range more often (``low + (high - low) * u ** power``).

    Each channel of a pixel is hit on its own (what MATLAB's ``imnoise`` does to an RGB
    array), except in a ``pixel_share`` of the images, where the first channel's codes hit
    every channel of the pixel at once (a black or white pixel, as a camera's dead or stuck
    pixels show): a colour model meets both.
    """
    if not 0.0 <= salt_vs_pepper <= 1.0:
        raise ValueError(f"salt_vs_pepper must lie in [0, 1], got {salt_vs_pepper}")
    low, high = check_amount(amount)
    if generator is not None:
        device = generator.device
    per_image = [shape[0]] + [1] * (len(shape) - 1)
    uniform = torch.rand(per_image, generator=generator, device=device)
    if density_power != 1.0:
        uniform = uniform.pow(density_power)
    density = uniform * (high - low) + low
    if clean_share > 0.0:  # drawn only when asked, so other settings keep their noise
        spared = torch.rand(per_image, generator=generator, device=device) < clean_share
        density = density.masked_fill(spared, 0.0)
    corrupted = torch.rand(shape, generator=generator, device=device) < density
    salt = torch.rand(shape, generator=generator, device=device) < salt_vs_pepper
    codes = corrupted.to(torch.uint8) * torch.where(salt, SALT, PEPPER).to(torch.uint8)
    if pixel_share > 0.0 and len(shape) > 1 and shape[1] > 1:  # drawn only when asked
        whole = torch.rand(per_image, generator=generator, device=device) < pixel_share
        codes = torch.where(whole, codes[:, :1].expand_as(codes), codes)
    return codes


def fixed_noise_codes(
    count: int,
    shape: Sequence[int],
    amount: Amount,
    salt_vs_pepper: float,
    seed: int,
    pixel_share: float = 0.0,
) -> torch.Tensor:
    """Noise codes for ``count`` images of ``shape`` (C, H, W), fixed by ``seed``: drawn in
    chunks of a set size, so they do not depend on batch sizes or on who asks."""
    generator = seeded_generator(seed)
    chunks = [
        sample_salt_and_pepper(
            (min(NOISE_CHUNK, count - start), *shape),
            amount,
            salt_vs_pepper,
            generator,
            pixel_share=pixel_share,
        )
        for start in range(0, count, NOISE_CHUNK)
    ]
    return torch.cat(chunks) if chunks else torch.empty((0, *shape), dtype=torch.uint8)


def apply_salt_and_pepper(clean: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Set pepper elements of ``clean`` to 0 and salt elements to 1."""
    noisy = torch.where(codes == PEPPER, 0.0, clean)
    return torch.where(codes == SALT, 1.0, noisy).to(clean.dtype)


def candidate_mask(images: torch.Tensor) -> torch.Tensor:
    """1.0 where a pixel is exactly 0 or 1 (salt or pepper could have set it), else 0.0.

    Integer images scaled to [0, 1] keep 0 and the maximum exact. A candidate is not
    necessarily noise: about 7% of clean FER2013 pixels are 0 or 255.
    """
    return ((images == 0.0) | (images == 1.0)).to(images.dtype)


def add_salt_and_pepper(
    clean: torch.Tensor,
    amount: Amount,
    salt_vs_pepper: float = 0.5,
    generator: torch.Generator | None = None,
    pixel_share: float = 0.0,
) -> torch.Tensor:
    """Return a noisy copy of ``clean`` (float, values in [0, 1]); ``pixel_share``: see
    :func:`sample_salt_and_pepper`."""
    codes = sample_salt_and_pepper(
        clean.shape, amount, salt_vs_pepper, generator, clean.device, pixel_share=pixel_share
    )
    return apply_salt_and_pepper(clean, codes)


def flatten_some(
    clean: torch.Tensor, share: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace a ``share`` of the images by all-black or all-white ones (half each).

    Every pixel of such an image is a candidate and none is noise: without them in
    training, a blind model reads an all-black picture as 100% pepper and "restores" it.
    """
    if share <= 0.0:
        return clean
    per_image = [clean.shape[0]] + [1] * (clean.dim() - 1)
    device = clean.device
    flat = torch.rand(per_image, generator=generator, device=device) < share
    white = torch.rand(per_image, generator=generator, device=device) < 0.5
    level = white.to(clean.dtype).expand_as(clean)
    return torch.where(flat, level, clean)
