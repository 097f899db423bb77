"""Inference modes are wrappers around the loaded network (self-ensemble views, bf16
autocast): the network stays as loaded, and every mode restores bit for bit as a plain loop
over the views under autocast does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import save_checkpoint

from denoise.data.noise import add_salt_and_pepper
from denoise.inference.checkpoints import load_denoiser
from denoise.inference.shipped import SHIPPED_MODELS
from denoise.models.denoiser import Autocast, Denoiser
from denoise.models.networks import Design
from denoise.models.self_ensemble import (
    SelfEnsemble,
    ViewCountError,
    from_view,
    self_ensemble,
    to_view,
)

FILES = {
    "faces": SHIPPED_MODELS["faces"].weights,
    "natural": SHIPPED_MODELS["natural"].weights,
    "natural-colour": SHIPPED_MODELS["natural"].colour,
}


def plain_loop(
    net: torch.nn.Module, noisy: torch.Tensor, views: int, autocast: torch.dtype | None
) -> torch.Tensor:
    """What a mode means, written out: each view restored once (under autocast where asked,
    channels_last as the models run), clipped, turned back and averaged in float64."""
    total = torch.zeros(noisy.shape, dtype=torch.float64)
    for view in range(views):
        seen = to_view(noisy, view).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            restored, _ = net.restore_and_decide(seen)
        total += from_view(restored.float().clamp(0.0, 1.0), view).double()
    return (total / views).float()


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("views", [1, 2, 8])
def test_each_shipped_model_restores_in_views_as_the_plain_loop(name: str, views: int) -> None:
    path = FILES[name]
    noisy = noisy_images(3 if name.endswith("colour") else 1)
    model = load_denoiser(path, "cpu", views=views)
    with torch.no_grad():
        expected = plain_loop(load_denoiser(path, "cpu").net, noisy, views, None)
    assert torch.equal(model.denoise(noisy), expected)


def noisy_images(channels: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    clean = torch.rand(2, channels, 20, 13, generator=generator)
    return add_salt_and_pepper(clean, 0.4, generator=generator)


@pytest.mark.parametrize("views", [1, 4])
def test_bf16_runs_each_view_under_autocast_as_the_plain_loop(tmp_path: Path, views: int) -> None:
    """bf16 on a plain convolution: the shipped U-Nets' bf16 passes on the CPU are not
    repeatable from one call to the next (oneDNN), so no two runs of them compare bit for bit."""
    torch.manual_seed(0)
    design = Design(net={"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1,
                         "kernel_size": 3, "padding": 1})  # fmt: skip
    path = save_checkpoint(Denoiser(design), tmp_path / "conv.ckpt")
    noisy = noisy_images(1)
    model = load_denoiser(path, "cpu", "bf16", views=views)
    assert model.autocast is torch.bfloat16 and model.views == views
    net = load_denoiser(path, "cpu").net
    with torch.no_grad():
        expected = plain_loop(ConvDecides(net), noisy, views, torch.bfloat16)
        exact = plain_loop(ConvDecides(net), noisy, views, None)
    restored = model.denoise(noisy)
    assert torch.equal(restored, expected) and restored.dtype == torch.float32
    assert not torch.equal(restored, exact)  # the convolution did run in bf16


class ConvDecides(torch.nn.Module):
    """A network without ``restore_and_decide`` meets the plain loop as one with it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def restore_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(noisy).contiguous(), None


def test_a_mode_wraps_the_model_and_leaves_it_as_loaded() -> None:
    path = FILES["faces"]
    model = load_denoiser(path, "cpu", "bf16", views=8)
    assert isinstance(model, SelfEnsemble) and isinstance(model.inner, Autocast)
    loaded = model.inner.inner
    assert isinstance(loaded, Denoiser) and (loaded.views, loaded.autocast) == (1, None)
    assert (model.views, model.autocast) == (8, torch.bfloat16)
    assert model.hparams is loaded.hparams and model.net is loaded.net
    assert isinstance(load_denoiser(path, "cpu"), Denoiser)  # fp32, one view: nothing to wrap
    two = self_ensemble(model.inner, 2)  # rewrapped for another picture, not changed
    assert (two.views, model.views, two.inner) == (2, 8, model.inner)
    assert self_ensemble(loaded, 1) is loaded
    with pytest.raises(ValueError, match="already averaged over 8 views"):
        self_ensemble(model, 2)
    with pytest.raises(ViewCountError, match="views=3: must be one of 1, 2, 4, 8"):
        self_ensemble(loaded, 3)
