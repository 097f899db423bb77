"""The reference U-Net: ConvModule encoder blocks, UpConvModule decoder blocks, 3x3 output conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from denoise.models.attention import GlobalSelfAttention


class PackedDropout(nn.Dropout):
    """Element-wise dropout whose mask comes from 16-bit uniforms, four per 64-bit random draw.

    ``nn.Dropout`` spends about a third of a CPU training step of this U-Net in
    ``bernoulli_``; drawing a quarter as many random numbers removes most of that. ``p``
    is quantised to 1/65536 (0.2 becomes 0.19999695).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        count = x.numel()
        bits = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device)
        bits.random_(-(2**63), 2**63 - 1)  # the full range: every 16-bit lane is uniform
        lanes = bits.view(torch.int16)[:count]
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        # The draws are i.i.d., so laying them out in x's own memory order avoids a copy.
        lanes = lanes.as_strided(x.shape, x.stride()) if dense else lanes.view(x.shape)
        keep = lanes >= round(self.p * 65536) - 32768
        return x * keep * (1.0 / (1.0 - self.p))


class ConvModule(nn.Sequential):
    """Two 3x3 convs, each followed by LeakyReLU, Dropout and BatchNorm2d (the reference order).

    The second conv may stride 2: that is how the encoder halves the resolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dropout: float = 0.2,
        negative_slope: float = 0.1,
        packed_dropout: bool = True,
    ) -> None:
        drop = PackedDropout if packed_dropout else nn.Dropout
        layers: list[nn.Module] = []
        for conv_in, conv_stride in ((in_channels, 1), (out_channels, stride)):
            layers += [
                nn.Conv2d(conv_in, out_channels, kernel_size=3, stride=conv_stride, padding=1),
                nn.LeakyReLU(negative_slope),
                drop(dropout),
                nn.BatchNorm2d(out_channels),
            ]
        super().__init__(*layers)


class AttentionGate(nn.Module):
    """Attention U-Net's gate (Oktay et al., 2018): the decoder's upsampled features decide,
    per pixel, how much of the encoder's skip to let through, so the skip stops copying noise
    the decoder has already seen past."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 2, 1)
        self.skip = nn.Conv2d(channels, inner, kernel_size=1)
        self.gating = nn.Conv2d(channels, inner, kernel_size=1)
        self.weight = nn.Conv2d(inner, 1, kernel_size=1)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.weight(F.relu(self.skip(skip) + self.gating(gating))))
        return skip * alpha


class UpConvModule(nn.Module):
    """Upsample x2 with a transposed conv, concatenate the encoder's skip (through an
    :class:`AttentionGate` with ``gated``), then a ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout: float = 0.2,
        negative_slope: float = 0.1,
        packed_dropout: bool = True,
        gated: bool = False,
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1
        )
        self.gate = AttentionGate(out_channels) if gated else None
        self.conv = ConvModule(
            2 * out_channels, out_channels, 1, dropout, negative_slope, packed_dropout
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([x, skip], dim=1))


class DenoisingUNet(nn.Module):
    """U-Net with ``depth`` encoder blocks (channels doubling from ``base_channels``),
    ``depth - 1`` decoder blocks and a 3x3 output conv.

    Inputs of any height and width work: they are padded (edge-replicated) up to a
    multiple of ``2 ** (depth - 1)`` and the output is cropped back to the input size.
    ``attention_levels`` adds a :class:`GlobalSelfAttention` after that many of the deepest
    encoder blocks (0: the reference, none); ``attention_gates`` makes it an Attention U-Net.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        depth: int = 5,
        dropout: float = 0.2,
        negative_slope: float = 0.1,
        packed_dropout: bool = True,
        attention_levels: int = 0,
        attention_gates: bool = False,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        if not 0 <= attention_levels <= depth:
            raise ValueError(
                f"attention_levels must lie in [0, depth={depth}], got {attention_levels}"
            )
        widths = [base_channels * 2**level for level in range(depth)]
        self.encoder = nn.ModuleList(
            ConvModule(
                in_channels if level == 0 else widths[level - 1],
                widths[level],
                stride=1 if level == 0 else 2,
                dropout=dropout,
                negative_slope=negative_slope,
                packed_dropout=packed_dropout,
            )
            for level in range(depth)
        )
        self.decoder = nn.ModuleList(
            UpConvModule(
                widths[level],
                widths[level - 1],
                dropout,
                negative_slope,
                packed_dropout,
                attention_gates,
            )
            for level in range(depth - 1, 0, -1)
        )
        self.first_attended = depth - attention_levels
        self.attention = nn.ModuleList(
            GlobalSelfAttention(widths[level]) for level in range(self.first_attended, depth)
        )
        self.output = nn.Conv2d(base_channels, out_channels, kernel_size=3, padding=1)
        self.size_multiple = 2 ** (depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_bottom = -height % self.size_multiple
        pad_right = -width % self.size_multiple
        if pad_bottom or pad_right:
            x = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level >= self.first_attended:
                x = self.attention[level - self.first_attended](x)
            skips.append(x)
        skips.pop()  # the deepest block feeds the decoder directly
        for block in self.decoder:
            x = block(x, skips.pop())
        return self.output(x)[..., :height, :width]
