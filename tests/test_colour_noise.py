"""Colour noise and the colour model's start: ``pixel_share`` (noise that hits all channels of
a pixel at once) and a grey corruption-aware model's weights spread over three channels
(``init_from`` of ``experiment=natural_colour``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import smooth_images, user_error
from hydra.utils import instantiate
from omegaconf import DictConfig

from denoise.data.noise import (
    PEPPER,
    SALT,
    apply_salt_and_pepper,
    fixed_noise_codes,
    sample_salt_and_pepper,
)
from denoise.inference.checkpoints import CheckpointError, load_denoiser
from denoise.models.module import DenoisingModule
from denoise.runtime.errors import error_lines
from denoise.training.run import train
from denoise.training.warm_start import warm_start

SHAPE = (400, 3, 8, 8)


def _codes_before_pixel_share(
    shape: tuple[int, ...],
    amount: float | tuple[float, float],
    generator: torch.Generator,
    clean_share: float = 0.0,
    density_power: float = 1.0,
) -> torch.Tensor:
    """The draw as it was before ``pixel_share`` existed, step by step, salt_vs_pepper 0.5."""
    low, high = (amount, amount) if isinstance(amount, float) else amount
    per_image = [shape[0]] + [1] * (len(shape) - 1)
    density = torch.rand(per_image, generator=generator).pow(density_power) * (high - low) + low
    if clean_share > 0.0:
        spared = torch.rand(per_image, generator=generator) < clean_share
        density = density.masked_fill(spared, 0.0)
    corrupted = torch.rand(shape, generator=generator) < density
    salt = torch.rand(shape, generator=generator) < 0.5
    return corrupted.to(torch.uint8) * torch.where(salt, SALT, PEPPER).to(torch.uint8)


def _whole_pixel(codes: torch.Tensor) -> torch.Tensor:
    """Per image: whether every channel of every pixel got the same code."""
    return (codes == codes[:, :1]).flatten(1).all(dim=1)


@pytest.mark.parametrize(
    "settings",
    [
        {"amount": 0.3},
        {"amount": (0.0, 0.95)},
        {"amount": (0.1, 0.9), "clean_share": 0.2, "density_power": 2.0},
    ],
)
def test_pixel_share_zero_keeps_the_noise_and_the_stream_of_every_setting(settings: dict) -> None:
    before, now = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    expected = _codes_before_pixel_share(SHAPE, generator=before, **settings)
    codes = sample_salt_and_pepper(SHAPE, generator=now, pixel_share=0.0, **settings)
    assert torch.equal(codes, expected)
    assert torch.equal(torch.rand(4, generator=now), torch.rand(4, generator=before))
    noisy = (codes != 0).flatten(1).any(dim=1)
    assert not _whole_pixel(codes)[noisy].any()  # each channel hit on its own


def test_pixel_share_one_gives_every_channel_the_same_codes_at_the_same_density() -> None:
    codes = sample_salt_and_pepper(
        SHAPE, 0.4, generator=torch.Generator().manual_seed(1), pixel_share=1.0
    )
    assert _whole_pixel(codes).all()
    assert 0.38 < (codes != 0).float().mean() < 0.42
    assert 0.45 < (codes == SALT).float().sum() / (codes != 0).float().sum() < 0.55
    fixed = fixed_noise_codes(5, (3, 16, 16), 0.5, 0.5, seed=3, pixel_share=1.0)
    assert _whole_pixel(fixed).all() and (fixed != 0).any()
    grey = sample_salt_and_pepper((6, 1, 8, 8), 0.4, generator=torch.Generator().manual_seed(1))
    same = sample_salt_and_pepper(
        (6, 1, 8, 8), 0.4, generator=torch.Generator().manual_seed(1), pixel_share=1.0
    )
    assert torch.equal(grey, same)  # one channel: nothing to draw, nothing changes


def test_pixel_share_half_hits_whole_pixels_in_about_half_the_images() -> None:
    codes = sample_salt_and_pepper(
        SHAPE, 0.5, generator=torch.Generator().manual_seed(2), pixel_share=0.5
    )
    whole = _whole_pixel(codes)
    assert 0.42 < whole.float().mean() < 0.58
    density = (codes != 0).float().mean(dim=(1, 2, 3))
    assert 0.4 < density[whole].mean() < 0.6 and 0.4 < density[~whole].mean() < 0.6


def test_pixel_share_outside_zero_to_one_is_one_line_in_train(
    compose_train: Callable[..., DictConfig], tiny_csv: Path, capsys
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", "data.noise.pixel_share=2")
    assert user_error(train, cfg, capsys) == [
        "error: data.noise.pixel_share=2: must be a number in [0, 1]"
    ]


def test_a_colour_model_started_from_the_grey_natural_model_restores_grey_as_it_does(
    compose_train: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_train("experiment=natural_colour", f"data.train_dir={tmp_path}")
    assert cfg.init_from == "natural" and cfg.data.channels == 3
    colour: DenoisingModule = instantiate(cfg.model)
    assert colour.hparams.net["in_channels"] == colour.hparams.net["out_channels"] == 3
    warm_start(colour, cfg.init_from)
    colour.eval()
    grey_model = load_denoiser(None, "cpu", weights="natural")

    clean = torch.from_numpy(smooth_images(2, 40, 40, seed=4)).unsqueeze(1).float() / 255
    generator = torch.Generator().manual_seed(5)
    codes = sample_salt_and_pepper((2, 3, 40, 40), 0.3, generator=generator, pixel_share=1.0)
    rgb = apply_salt_and_pepper(clean.expand(-1, 3, -1, -1), codes)
    grey = apply_salt_and_pepper(clean, codes[:, :1])

    restored = colour.denoise(rgb)
    expected = grey_model.denoise(grey)
    assert not torch.allclose(expected, grey, atol=1e-3)  # the grey model did restore something
    for channel in range(3):
        torch.testing.assert_close(restored[:, channel : channel + 1], expected, rtol=0, atol=1e-5)


def test_a_grey_model_of_another_design_starts_no_colour_one(tmp_path: Path) -> None:
    grey = DenoisingModule(base_channels=4, depth=3)  # the reference U-Net: no noise planes
    path = tmp_path / "unet.ckpt"
    torch.save({"state_dict": grey.state_dict(), "hyper_parameters": dict(grey.hparams)}, path)
    colour = DenoisingModule(base_channels=4, depth=3, in_channels=3, out_channels=3)
    with pytest.raises(CheckpointError) as refused:
        warm_start(colour, str(path))
    lines = error_lines(refused.value)
    assert lines[0] == (
        f"error: {path}: a grey model warm-starts a colour one only for the corruption_aware design"
    )
    assert lines[1:] == ["warm-start from a checkpoint of the same data.channels"]
