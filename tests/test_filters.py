"""Classical filters: scipy's median, no shift, exact switching, a pure-Python adaptive median."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from conftest import smooth_images

import denoise.models.filters as filters
from denoise.data.noise import add_salt_and_pepper
from denoise.models.filters import (
    adaptive_median_filter,
    biharmonic_inpainting,
    classical_filters,
    clean_switching_median_filter,
    median_filter,
    switching_median_filter,
)

ALL_FILTERS = classical_filters(amf_max_window=7)


def _noisy(clean: torch.Tensor, amount: float, seed: int = 0) -> torch.Tensor:
    return add_salt_and_pepper(clean, amount, generator=torch.Generator().manual_seed(seed))


def _psnr(images: torch.Tensor, clean: torch.Tensor) -> float:
    mse = ((images - clean) ** 2).mean(dim=(1, 2, 3))
    return (-10 * torch.log10(mse)).mean().item()


def _grey_with_impulses() -> torch.Tensor:
    """Constant 0.5 with isolated salt and pepper, corners and edges included."""
    image = torch.full((2, 1, 12, 12), 0.5)
    for plane, row, col, value in [
        (0, 0, 0, 0.0),
        (0, 4, 4, 1.0),
        (0, 7, 9, 0.0),
        (0, 11, 5, 1.0),
        (1, 0, 11, 1.0),
        (1, 6, 0, 0.0),
        (1, 5, 6, 1.0),
        (1, 11, 11, 0.0),
    ]:
        image[plane, 0, row, col] = value
    return image


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("shape", [(2, 1, 13, 17), (1, 3, 11, 9)])
def test_median_matches_scipy_with_nearest_edges(size: int, shape: tuple[int, ...]) -> None:
    images = torch.rand(shape, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    planes = images.reshape(-1, *shape[-2:]).numpy()
    expected = [scipy.ndimage.median_filter(plane, size=size, mode="nearest") for plane in planes]
    expected = torch.from_numpy(np.stack(expected)).reshape(shape)
    torch.testing.assert_close(median_filter(images, size), expected, atol=0, rtol=0)


@pytest.mark.parametrize("name", list(ALL_FILTERS))
def test_no_shift_impulse_removed_and_edges_stay_in_place(name: str) -> None:
    denoise = ALL_FILTERS[name]
    grey = torch.full((1, 1, 9, 11), 0.5)
    impulse = grey.clone()
    impulse[0, 0, 4, 6] = 1.0
    assert torch.equal(denoise(impulse), grey)
    step = torch.full((1, 1, 10, 12), 0.2)
    step[..., 5:] = 0.8
    assert torch.equal(denoise(step), step)
    assert torch.equal(denoise(step.transpose(-1, -2)), step.transpose(-1, -2))


@pytest.mark.parametrize("name", list(ALL_FILTERS))
def test_input_untouched_shape_and_dtype_kept(name: str) -> None:
    noisy = _noisy(torch.rand(3, 2, 10, 13, dtype=torch.float64), 0.4)
    before = noisy.clone()
    denoised = ALL_FILTERS[name](noisy)
    assert torch.equal(noisy, before)
    assert denoised.shape == noisy.shape and denoised.dtype == torch.float64
    assert denoised.data_ptr() != noisy.data_ptr()


def test_switching_restores_isolated_impulses_exactly() -> None:
    noisy = _grey_with_impulses()
    assert torch.equal(switching_median_filter(noisy), torch.full_like(noisy, 0.5))


def test_switching_changes_only_zeros_and_ones_and_replaces_them_by_the_median() -> None:
    noisy = _noisy(torch.rand(4, 2, 16, 16, generator=torch.Generator().manual_seed(1)), 0.3)
    detected = (noisy == 0.0) | (noisy == 1.0)
    assert detected.float().mean().item() == pytest.approx(0.3, abs=0.05)
    denoised = switching_median_filter(noisy)
    assert torch.equal(denoised[~detected], noisy[~detected])
    assert torch.equal(denoised[detected], median_filter(noisy)[detected])


def test_switching_beats_plain_median_and_noisy_input_on_smooth_images() -> None:
    clean = torch.from_numpy(smooth_images(8, 32, 32)).unsqueeze(1).float() / 255
    noisy = _noisy(clean, 0.1)
    switched = _psnr(switching_median_filter(noisy), clean)
    assert switched > _psnr(noisy, clean) + 15
    assert switched > _psnr(median_filter(noisy), clean)


def _reference_adaptive_median(image: np.ndarray, max_window: int) -> np.ndarray:
    """Gonzalez & Woods' adaptive median, one pixel at a time, on one 2D image."""
    radius = max_window // 2
    padded = np.pad(image, radius, mode="edge")
    denoised = np.empty_like(image)
    for row, col in np.ndindex(*image.shape):
        z = image[row, col]
        for size in range(3, max_window + 1, 2):
            top, left = row + radius - size // 2, col + radius - size // 2
            window = padded[top : top + size, left : left + size]
            zmin, zmed, zmax = window.min(), np.median(window), window.max()
            if zmin < zmed < zmax:
                denoised[row, col] = z if zmin < z < zmax else zmed
                break
        else:
            denoised[row, col] = zmed
    return denoised


def _reference_batch(images: torch.Tensor, max_window: int) -> torch.Tensor:
    planes = images.reshape(-1, *images.shape[-2:]).numpy()
    denoised = [_reference_adaptive_median(plane, max_window) for plane in planes]
    return torch.from_numpy(np.stack(denoised)).reshape(images.shape)


def _quantized(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Coarse grey levels (0 and 1 included), so windows are full of ties."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, shape, generator=generator, dtype=torch.float64) / 10


@pytest.mark.parametrize("max_window", [3, 5, 7])
@pytest.mark.parametrize("amount", [0.3, 0.6, 0.9])
def test_adaptive_median_matches_pixel_loop_reference(amount: float, max_window: int) -> None:
    noisy = _noisy(_quantized((3, 2, 9, 11), seed=max_window), amount, seed=max_window)
    expected = _reference_batch(noisy, max_window)
    torch.testing.assert_close(adaptive_median_filter(noisy, max_window), expected, atol=0, rtol=0)


def test_adaptive_median_matches_reference_outside_unit_range() -> None:
    """Below 0, a window full of zeros passes level A: counting zeros must not decide it."""
    clean = _quantized((3, 1, 9, 11), seed=3) * 2 - 1
    noisy = add_salt_and_pepper(clean, 0.7, 0.2, torch.Generator().manual_seed(3))
    assert noisy.min() < 0 and (noisy == 0).float().mean() > 0.5
    expected = _reference_batch(noisy, 7)
    torch.testing.assert_close(adaptive_median_filter(noisy, 7), expected, atol=0, rtol=0)


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    noisy = _noisy(_quantized((5, 2, 12, 10), seed=4), 0.7, seed=4)
    unchunked = {name: denoise(noisy) for name, denoise in ALL_FILTERS.items()}
    monkeypatch.setattr(filters, "GATHER_ELEMENTS", 100)
    monkeypatch.setattr(filters, "ADAPTIVE_PADDED_PIXELS", 1000)  # 3 planes at a time
    for name, denoise in ALL_FILTERS.items():
        assert torch.equal(denoise(noisy), unchunked[name]), name


def test_adaptive_median_removes_dense_noise_from_a_constant_image() -> None:
    """At 70% noise the border cannot always be restored: edge replication copies a corner
    pixel into a quarter of its window. Away from the border every pixel comes back."""
    grey = torch.full((8, 1, 32, 32), 0.5)
    noisy = _noisy(grey, 0.7, seed=5)
    assert (adaptive_median_filter(noisy, 9) == 0.5).float().mean().item() > 0.97
    margin = 13 // 2
    interior = adaptive_median_filter(noisy, 13)[..., margin:-margin, margin:-margin]
    assert torch.equal(interior, grey[..., margin:-margin, margin:-margin])


@pytest.mark.parametrize("max_window", [1, 2, 4, 0, -3, 8.0])
def test_bad_max_window_is_refused(max_window) -> None:
    with pytest.raises(ValueError, match="max_window must be an odd integer >= 3"):
        adaptive_median_filter(torch.rand(1, 1, 5, 5), max_window)


@pytest.mark.parametrize("size", [0, 2, -1])
def test_bad_median_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="size must be an odd integer >= 1"):
        median_filter(torch.rand(1, 1, 5, 5), size)


def test_classical_filters_names_order_and_settings() -> None:
    methods = classical_filters(amf_max_window=5)
    assert list(methods) == [
        "median 3x3",
        "adaptive median",
        "switching median 3x3",
        "switching median 3x3, clean neighbours",
        "biharmonic inpainting",
    ]
    noisy = _noisy(_quantized((2, 1, 12, 12), seed=6), 0.8, seed=6)
    assert torch.equal(methods["adaptive median"](noisy), adaptive_median_filter(noisy, 5))
    assert not torch.equal(methods["adaptive median"](noisy), adaptive_median_filter(noisy, 7))
    assert torch.equal(methods["median 3x3"](noisy), median_filter(noisy, 3))


def test_clean_switching_median_ignores_neighbouring_impulses() -> None:
    clean = torch.full((1, 1, 16, 16), 0.4)
    noisy = _noisy(clean, 0.5, seed=3)
    restored = clean_switching_median_filter(noisy)
    clean_pixels = 1.0 - filters.candidate_mask(noisy)
    clean_in_window = torch.nn.functional.conv2d(clean_pixels, torch.ones(1, 1, 3, 3), padding=1)
    voted = clean_in_window > 0
    assert voted.float().mean() > 0.9
    assert torch.equal(restored[voted], clean[voted])  # every vote is 0.4
    assert not torch.equal(switching_median_filter(noisy)[voted], clean[voted])  # impulses vote


def test_clean_switching_median_falls_back_to_the_plain_median() -> None:
    noisy = torch.ones(1, 1, 5, 5)
    noisy[0, 0, 2, 2] = 0.0  # no clean pixel anywhere: the plain median decides
    assert torch.equal(clean_switching_median_filter(noisy), median_filter(noisy))


def test_biharmonic_inpainting_matches_scikit_image_and_keeps_clean_pixels() -> None:
    from skimage.restoration import inpaint_biharmonic

    clean = torch.from_numpy(smooth_images(2, 20, 24, seed=5) / 255).float().unsqueeze(1)
    noisy = _noisy(clean, 0.3, seed=5)
    restored = biharmonic_inpainting(noisy)
    mask = filters.candidate_mask(noisy).bool()
    assert torch.equal(restored[~mask], noisy[~mask])
    expected = inpaint_biharmonic(noisy[1, 0].double().numpy(), mask[1, 0].numpy())
    np.testing.assert_allclose(restored[1, 0].numpy(), np.clip(expected, 0, 1), atol=1e-6)
    assert _psnr(restored, clean) > _psnr(switching_median_filter(noisy), clean)


def test_biharmonic_inpainting_leaves_planes_without_known_pixels() -> None:
    planes = torch.stack([torch.ones(1, 6, 6), torch.full((1, 6, 6), 0.5)])
    assert torch.equal(biharmonic_inpainting(planes), planes)
