"""The colour model's design (issue 25): ``model.net.cross_channel`` restores one channel at a time
with the grey model's weights, seeing the other channels' planes too. Warm-started from the
grey natural model it restores each channel exactly as the grey model does; what it learns
from the other channels comes in through weights that start at zero."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import skimage.data
import torch
from omegaconf import DictConfig

from denoise.inference.checkpoints import load_denoiser
from denoise.inference.shipped import SHIPPED_MODELS
from denoise.models.corruption_aware import (
    colour_difference,
    gaussian_kernel,
    luminance_samples,
)
from denoise.models.module import DenoisingModule
from denoise.models.networks import Design
from denoise.runtime.errors import SettingError
from denoise.training.preflight import check_training_settings
from denoise.training.warm_start import warm_start


def noisy(channels: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """Pictures whose channels are hit by salt-and-pepper each on its own."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(2, channels, size, size, generator=generator)
    hit = torch.rand(clean.shape, generator=generator) < 0.3
    salt = torch.rand(clean.shape, generator=generator) < 0.5
    return torch.where(hit, salt.float(), clean)


@pytest.fixture(scope="module")
def grey_and_colour() -> tuple[torch.nn.Module, DenoisingModule]:
    grey = load_denoiser(None, "cpu", weights="natural")
    colour_net = {**grey.hparams.net, "in_channels": 3, "out_channels": 3, "cross_channel": True}
    colour = DenoisingModule(**{**grey.hparams, "net": colour_net}).eval()
    warm_start(colour, "natural")
    return grey, colour


def test_warm_started_from_the_grey_model_it_restores_each_channel_as_the_grey_model_does(
    grey_and_colour: tuple[torch.nn.Module, DenoisingModule],
) -> None:
    grey, colour = grey_and_colour
    pictures = noisy(3)
    per_channel = torch.cat([grey.denoise(pictures[:, c : c + 1]) for c in range(3)], dim=1)
    torch.testing.assert_close(colour.denoise(pictures), per_channel, rtol=0, atol=1e-6)


def test_each_channel_reads_the_other_channels_through_its_own_weights() -> None:
    torch.manual_seed(0)
    design = Design.from_settings(
        dict(
            in_channels=3,
            out_channels=3,
            base_channels=4,
            depth=2,
            dropout=0.0,
            architecture="corruption_aware",
            global_context=True,
            cross_channel=True,
        )
    )
    network = design.network().eval()
    first = network.backbone.encoder[0][0].weight
    assert first.shape[1] == 5 + 3 * 2  # its own 5 planes, then 3 of each other channel
    pictures = noisy(3, size=32)
    changed = pictures.clone()
    changed[:, 1] = torch.where(changed[:, 1] > 0.5, 0.0, 1.0)  # green, every pixel a candidate
    with torch.no_grad():
        red, red_after = network(pictures)[:, 0], network(changed)[:, 0]
        assert not torch.equal(red, red_after)  # red's restoration reads green
        first[:, 5:] = 0.0  # without the other channels' weights, red ignores green
        red, red_after = network(pictures)[:, 0], network(changed)[:, 0]
    torch.testing.assert_close(red, red_after, rtol=0, atol=0)


def test_cross_channel_is_a_setting_of_the_corruption_aware_design_alone(
    compose_train: Callable[..., DictConfig],
) -> None:
    cfg = compose_train("+model.net.cross_channel=true", "data.channels=3")
    with pytest.raises(SettingError) as raised:
        check_training_settings(cfg)
    assert str(raised.value) == (
        "model.net.cross_channel: not a setting of denoise.models.unet.DenoisingUNet"
    )
    cfg = compose_train(
        "model=corruption_aware", "model.net.cross_channel=true", "model.net.refine_channels=4"
    )
    with pytest.raises(SettingError) as raised:
        check_training_settings(cfg)
    assert str(raised.value) == (
        "model.net: cross_channel has no refinement stage: set refine_channels=0"
    )


def test_the_shipped_colour_model_is_the_grey_model_in_the_cross_channel_design() -> None:
    """How ``denoise/weights/blind-natural-colour.ckpt`` was made (README, "Colour photos"):
    the grey natural model's weights in the cross-channel design, with the colour-difference
    and luminance stages; no training step."""
    grey = load_denoiser(None, "cpu", weights="natural")
    colour_net = {
        **grey.hparams.net,
        "in_channels": 3,
        "out_channels": 3,
        "cross_channel": True,
        "colour_sigma": 1.0,
        "luminance_sigma": 1.0,
    }
    built = DenoisingModule(**{**grey.hparams, "net": colour_net})
    warm_start(built, "natural")
    shipped = torch.load(SHIPPED_MODELS["natural"].colour, map_location="cpu", weights_only=True)
    assert Design.from_settings(shipped["hyper_parameters"]).net == colour_net
    assert shipped["state_dict"].keys() == built.state_dict().keys()
    for name, tensor in built.state_dict().items():
        torch.testing.assert_close(shipped["state_dict"][name], tensor, rtol=0, atol=0)


def test_the_colour_stage_takes_a_noisy_value_from_a_clean_channel_and_keeps_the_rest() -> None:
    kernel = gaussian_kernel(1.0)
    green = torch.linspace(0.2, 0.8, 16).repeat(16, 1)
    restored = torch.stack([green + 0.1, green, green - 0.1])[None]  # red = green + 0.1
    noisy = restored.clone()
    noisy[0, 0, 8, 8] = 1.0  # red hit by salt at one pixel; green and blue clean there
    clean = (noisy != 0) & (noisy != 1)
    judged = torch.zeros_like(noisy, dtype=torch.bool)
    judged[0, 0, 8, 8] = True
    wrong = restored.clone()
    wrong[0, 0, 8, 8] = 0.0  # what a poor grey estimate might have said
    result = colour_difference(wrong, noisy, clean.float(), judged, kernel)
    # from green and blue: each clean value plus the local difference of the restored planes
    truth = restored[0, 0, 8, 8].item()
    assert abs(result[0, 0, 8, 8].item() - truth) < abs(wrong[0, 0, 8, 8].item() - truth) / 5
    unchanged = ~judged
    torch.testing.assert_close(result[unchanged], wrong[unchanged], rtol=0, atol=0)


def test_the_luminance_plane_holds_every_clean_sample_less_its_chroma() -> None:
    noisy = torch.tensor([[0.6, 1.0], [0.0, 1.0], [0.4, 0.0]]).view(1, 3, 1, 2)  # 2 pixels
    clean = ((noisy != 0) & (noisy != 1)).float()
    chroma = torch.tensor([[0.1, 0.0], [0.0, 0.0], [-0.1, 0.0]]).view(1, 3, 1, 2)
    plane = luminance_samples(noisy, clean, chroma)
    # pixel 1: red and blue clean, 0.6 - 0.1 and 0.4 + 0.1; pixel 2: no clean channel, the
    # majority of its black and white values (white), still a candidate
    torch.testing.assert_close(plane, torch.tensor([0.5, 1.0]).view(1, 1, 1, 2))


def test_the_luminance_stage_inpaints_heavy_noise_from_every_channels_clean_samples() -> None:
    """At 90% noise drawn per channel, about 27% of pixels have some clean channel where 10%
    have a given one: the luminance pass inpaints from that denser plane."""
    shipped = torch.load(SHIPPED_MODELS["natural"].colour, map_location="cpu", weights_only=True)
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1) / 255.0
    clean = photo[:, 100:196, 100:196]  # her face, the flag and the suit
    generator = torch.Generator().manual_seed(3)
    hit = torch.rand(clean.shape, generator=generator) < 0.9
    salt = (torch.rand(clean.shape, generator=generator) < 0.5).float()
    pictures = torch.where(hit, salt, clean)[None]
    scores = {}
    for sigma in (0.0, 1.0):
        model = DenoisingModule(**{**shipped["hyper_parameters"], "luminance_sigma": sigma})
        model.load_state_dict(shipped["state_dict"])
        error = (model.eval().denoise(pictures)[0] - clean).pow(2).mean()
        scores[sigma] = float(-10 * torch.log10(error))
    assert scores[1.0] > scores[0.0] + 1.0, scores
