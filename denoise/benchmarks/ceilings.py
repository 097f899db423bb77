"""The machine's convolution ceilings: GFLOP/s of a model's own convolutions timed alone,
and of one plain convolution, so that every rate reads as a share of what the machine does."""

from __future__ import annotations

import copy

import torch
from torch import nn

from denoise.benchmarks.timing import count_flops, in_precision, seconds_per_call


def conv_shapes(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Module, torch.Size]]:
    """Every convolution of ``model`` with the input shape it sees for ``example``."""
    seen: list[tuple[nn.Module, torch.Size]] = []
    hooks = [
        layer.register_forward_pre_hook(lambda layer, args: seen.append((layer, args[0].shape)))
        for layer in model.modules()
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return seen


def conv_ceiling(
    model: nn.Module,
    example: torch.Tensor,
    backward: bool,
    min_seconds: float,
    precision: str = "fp32",
) -> float:
    """GFLOP/s of the model's own convolutions timed alone, channels_last, in ``precision``."""
    total_flops, total_seconds = 0, 0.0
    for layer, shape in conv_shapes(model, example):
        conv = copy.deepcopy(layer).to(memory_format=torch.channels_last)
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(backward)
        grad = torch.ones_like(conv(x)) if backward else None

        def call(
            conv: nn.Module = conv, x: torch.Tensor = x, grad: torch.Tensor | None = grad
        ) -> None:
            if backward:
                with in_precision(precision):
                    out = conv(x)
                out.backward(grad.to(out.dtype))
            else:
                with torch.no_grad(), in_precision(precision):
                    conv(x)

        total_flops += count_flops(call)
        total_seconds += seconds_per_call(call, min_seconds / 4)
    return total_flops / total_seconds / 1e9


def plain_conv_ceiling(min_seconds: float, precision: str = "fp32") -> float:
    conv = nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(32, 64, 48, 48).contiguous(memory_format=torch.channels_last).requires_grad_()

    def call() -> None:
        with in_precision(precision):
            out = conv(x)
        out.float().sum().backward()

    return count_flops(call) / seconds_per_call(call, min_seconds) / 1e9
