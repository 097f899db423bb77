"""Global self-attention for a U-Net's coarse levels: every position sees the whole image.

A 3x3-conv U-Net only relates pixels its receptive field spans; the blind-denoising
literature credits global attention with part of its lead at high noise, where the nearest
clean pixels are far away. The block is residual and its output projection starts at zero,
so it can be added to a trained network (``init_from``) without changing what it computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalSelfAttention(nn.Module):
    """``x + proj(attention(norm(x)))`` over all ``height * width`` positions of a feature map."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, channels // self.heads, -1)
        query, key, value = (part.transpose(-1, -2) for part in qkv.unbind(dim=1))
        attended = F.scaled_dot_product_attention(query, key, value)  # (B, heads, HW, C/heads)
        attended = attended.transpose(-1, -2).reshape(batch, channels, height, width)
        return x + self.proj(attended)
