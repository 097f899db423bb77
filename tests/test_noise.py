"""Salt-and-pepper noise: density, salt share, per-image ranges and determinism."""

from __future__ import annotations

import pytest
import torch

from denoise.data.noise import (
    PEPPER,
    SALT,
    add_salt_and_pepper,
    apply_salt_and_pepper,
    flatten_some,
    sample_salt_and_pepper,
)

GREY = torch.full((64, 1, 48, 48), 0.5)


@pytest.mark.parametrize("amount", [0.02, 0.1, 0.5, 0.9])
def test_corrupted_fraction_matches_amount(amount: float) -> None:
    noisy = add_salt_and_pepper(GREY, amount, generator=torch.Generator().manual_seed(0))
    fraction = (noisy != 0.5).float().mean().item()
    assert fraction == pytest.approx(amount, abs=0.01)
    assert set(noisy.unique().tolist()) <= {0.0, 0.5, 1.0}


@pytest.mark.parametrize("salt_vs_pepper", [0.0, 0.3, 0.5, 1.0])
def test_salt_share_matches_salt_vs_pepper(salt_vs_pepper: float) -> None:
    noisy = add_salt_and_pepper(GREY, 0.5, salt_vs_pepper, torch.Generator().manual_seed(1))
    salt, pepper = (noisy == 1.0).sum().item(), (noisy == 0.0).sum().item()
    assert salt / (salt + pepper) == pytest.approx(salt_vs_pepper, abs=0.01)


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    def draw(seed: int) -> torch.Tensor:
        return add_salt_and_pepper(GREY, 0.1, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_range_amount_is_drawn_per_image() -> None:
    codes = sample_salt_and_pepper(
        (400, 1, 48, 48), (0.0, 0.9), generator=torch.Generator().manual_seed(2)
    )
    per_image = (codes != 0).float().mean(dim=(1, 2, 3))
    assert per_image.min() < 0.05 and per_image.max() > 0.85
    assert per_image.mean().item() == pytest.approx(0.45, abs=0.05)


def test_codes_apply_exactly_and_leave_other_pixels_alone() -> None:
    clean = torch.rand(2, 3, 5, 7)
    codes = sample_salt_and_pepper(clean.shape, 0.3, generator=torch.Generator().manual_seed(3))
    noisy = apply_salt_and_pepper(clean, codes)
    assert torch.equal(noisy[codes == PEPPER], torch.zeros(int((codes == PEPPER).sum())))
    assert torch.equal(noisy[codes == SALT], torch.ones(int((codes == SALT).sum())))
    assert torch.equal(noisy[codes == 0], clean[codes == 0])


@pytest.mark.parametrize("amount", [-0.1, 1.5, (0.5, 0.2), (0.1, 0.2, 0.3)])
def test_invalid_amounts_are_refused(amount) -> None:
    with pytest.raises(ValueError, match="noise amount"):
        add_salt_and_pepper(GREY, amount)


def test_clean_share_spares_whole_images_and_zero_keeps_the_old_stream() -> None:
    shape = (400, 1, 16, 16)
    plain = sample_salt_and_pepper(shape, 0.5, generator=torch.Generator().manual_seed(3))
    unchanged = sample_salt_and_pepper(
        shape, 0.5, generator=torch.Generator().manual_seed(3), clean_share=0.0
    )
    assert torch.equal(plain, unchanged)
    codes = sample_salt_and_pepper(
        shape, 0.5, generator=torch.Generator().manual_seed(3), clean_share=0.25
    )
    per_image = (codes != 0).float().mean(dim=(1, 2, 3))
    spared = per_image == 0
    assert 0.18 < spared.float().mean() < 0.32
    assert per_image[~spared].min() > 0.3  # the others keep their density


def test_flatten_some_makes_all_black_or_all_white_images() -> None:
    images = torch.rand(400, 1, 8, 8) * 0.8 + 0.1
    mixed = flatten_some(images, 0.5, torch.Generator().manual_seed(0))
    flat = mixed.amax(dim=(1, 2, 3)) == mixed.amin(dim=(1, 2, 3))
    assert 0.4 < flat.float().mean() < 0.6
    levels = mixed[flat].amax(dim=(1, 2, 3))
    assert set(levels.tolist()) == {0.0, 1.0}
    assert torch.equal(mixed[~flat], images[~flat])
    assert flatten_some(images, 0.0) is images


def test_density_power_draws_low_densities_more_often() -> None:
    shape = (2000, 1, 8, 8)
    plain = sample_salt_and_pepper(shape, [0.0, 1.0], generator=torch.Generator().manual_seed(1))
    skewed = sample_salt_and_pepper(
        shape, [0.0, 1.0], generator=torch.Generator().manual_seed(1), density_power=3.0
    )
    assert (plain != 0).float().mean() == pytest.approx(0.5, abs=0.03)
    assert (skewed != 0).float().mean() == pytest.approx(0.25, abs=0.03)  # E[u**3] = 1/4
