"""The reference U-Net: structure, parameter count and any input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from denoise.unet import ConvModule, DenoisingUNet, UpConvModule


def test_default_model_is_the_reference_size() -> None:
    model = DenoisingUNet()
    assert sum(p.numel() for p in model.parameters()) == 8_636_065
    assert len(model.encoder) == 5 and len(model.decoder) == 4
    assert all(isinstance(block, ConvModule) for block in model.encoder)
    assert all(isinstance(block, UpConvModule) for block in model.decoder)
    assert model.output.kernel_size == (3, 3)


def test_conv_module_follows_the_reference_order() -> None:
    block = ConvModule(1, 8, stride=2, dropout=0.3)
    kinds = [type(layer) for layer in block]
    assert kinds == [nn.Conv2d, nn.LeakyReLU, nn.Dropout, nn.BatchNorm2d] * 2
    assert block[0].stride == (1, 1) and block[4].stride == (2, 2)
    assert block[1].negative_slope == 0.1 and block[2].p == 0.3


@pytest.mark.parametrize("size", [(48, 48), (128, 128), (37, 53), (5, 9)])
def test_output_has_the_input_size(size: tuple[int, int]) -> None:
    model = DenoisingUNet(base_channels=4).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, *size)).shape == (2, 1, *size)


def test_channels_and_depth_are_configurable() -> None:
    model = DenoisingUNet(in_channels=3, out_channels=3, base_channels=8, depth=3).eval()
    assert len(model.encoder) == 3 and len(model.decoder) == 2
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 48)).shape == (1, 3, 48, 48)


def test_depth_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        DenoisingUNet(depth=1)
