"""The reference U-Net: structure, parameter count and any input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from denoise.models.unet import ConvModule, DenoisingUNet, PackedDropout, UpConvModule


def test_default_model_is_the_reference_size() -> None:
    model = DenoisingUNet()
    assert sum(p.numel() for p in model.parameters()) == 8_636_065
    assert len(model.encoder) == 5 and len(model.decoder) == 4
    assert all(isinstance(block, ConvModule) for block in model.encoder)
    assert all(isinstance(block, UpConvModule) for block in model.decoder)
    assert model.output.kernel_size == (3, 3)


def test_conv_module_follows_the_reference_order() -> None:
    block = ConvModule(1, 8, stride=2, dropout=0.3)
    kinds = [nn.Conv2d, nn.LeakyReLU, nn.Dropout, nn.BatchNorm2d] * 2
    assert all(isinstance(layer, kind) for layer, kind in zip(block, kinds, strict=True))
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


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_packed_dropout_drops_a_fraction_p_and_keeps_the_mean(
    p: float, channels_last: bool
) -> None:
    torch.manual_seed(0)
    x = torch.ones(16, 8, 48, 48)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = PackedDropout(p).train()(x)
    assert (y == 0).float().mean().item() == pytest.approx(p, abs=0.005)
    assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    per_channel = (y == 0).float().mean(dim=(0, 2, 3))  # no lane or layout bias
    assert per_channel.min().item() > p - 0.02 and per_channel.max().item() < p + 0.02


def test_packed_dropout_masks_gradients_and_is_identity_in_eval() -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 3, 10, 10, requires_grad=True)
    dropout = PackedDropout(0.3)
    y = dropout(x)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)
    assert dropout.eval()(x) is x
    assert torch.equal(PackedDropout(1.0).train()(x), torch.zeros_like(x))


def test_attention_gates_make_an_attention_unet_of_any_input_size() -> None:
    model = DenoisingUNet(1, 1, base_channels=4, depth=3, attention_gates=True).eval()
    plain = DenoisingUNet(1, 1, base_channels=4, depth=3).eval()
    gates = [block.gate for block in model.decoder]
    assert all(gate is not None for gate in gates) and plain.decoder[0].gate is None
    assert model(torch.rand(2, 1, 37, 53)).shape == (2, 1, 37, 53)
    # A gate scales the skip per pixel by a weight in (0, 1), shared across its channels.
    skip, gating = torch.rand(1, 8, 6, 6), torch.rand(1, 8, 6, 6)
    gate = gates[0]
    alpha = gate(skip, gating) / skip
    assert torch.all((alpha > 0) & (alpha < 1))
    assert torch.allclose(alpha, alpha[:, :1].expand_as(alpha), atol=1e-5)
