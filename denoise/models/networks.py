"""The network a design describes: the one builder that training, checkpoint loading and
warm starts share. Nothing here imports Lightning, so loading a model for inference does not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from denoise.models.corruption_aware import CorruptionAwareUNet
from denoise.models.unet import DenoisingUNet

ARCHITECTURES = ("unet", "corruption_aware")
# Parts a network may gain over the checkpoint it warm-starts from: each starts out computing
# nothing (a zero output projection), so the grown network computes what the old one did.
IDENTITY_AT_START = ("attention", "refiner")


@dataclass(frozen=True)
class Design:
    """Every hyperparameter a checkpoint saves, with its default: a checkpoint written before
    a setting existed gets the default, which is what it was trained with. The field order is
    the order checkpoints list them in. ``optimizer``, ``scheduler`` and ``loss`` only matter
    to training; they are kept so that a design saved again is the design read."""

    in_channels: int = 1
    out_channels: int = 1
    base_channels: int = 32
    depth: int = 5
    dropout: float = 0.2
    negative_slope: float = 0.1
    channels_last: bool = True
    packed_dropout: bool = True
    optimizer: Mapping[str, Any] | None = None
    scheduler: Mapping[str, Any] | None = None
    architecture: str = "unet"
    loss: str = "mse"
    global_context: bool = False
    attention_levels: int = 0
    refine_channels: int = 0
    attention_gates: bool = False
    cross_channel: bool = False
    colour_sigma: float = 0.0
    luminance_sigma: float = 0.0

    def network(self) -> nn.Module:
        """The untrained network of this design (:func:`build_network`)."""
        return build_network(
            self.architecture,
            self.in_channels,
            self.out_channels,
            self.base_channels,
            self.depth,
            self.dropout,
            self.negative_slope,
            self.packed_dropout,
            self.global_context,
            self.attention_levels,
            self.refine_channels,
            self.attention_gates,
            self.cross_channel,
            self.colour_sigma,
            self.luminance_sigma,
        )


def build_network(
    architecture: str,
    in_channels: int,
    out_channels: int,
    base_channels: int,
    depth: int,
    dropout: float,
    negative_slope: float,
    packed_dropout: bool,
    global_context: bool = False,
    attention_levels: int = 0,
    refine_channels: int = 0,
    attention_gates: bool = False,
    cross_channel: bool = False,
    colour_sigma: float = 0.0,
    luminance_sigma: float = 0.0,
) -> nn.Module:
    """``unet``: the reference U-Net, re-synthesising every pixel. ``corruption_aware``:
    the same U-Net as a backbone that only rewrites black or white pixels (see
    :mod:`denoise.models.corruption_aware`)."""
    if architecture == "unet":
        if global_context:
            raise ValueError("global_context is a setting of the corruption_aware architecture")
        if refine_channels:
            raise ValueError("refine_channels is a setting of the corruption_aware architecture")
        if cross_channel or colour_sigma or luminance_sigma:
            raise ValueError(
                "cross_channel, colour_sigma and luminance_sigma are settings of the "
                "corruption_aware architecture"
            )
        return DenoisingUNet(
            in_channels,
            out_channels,
            base_channels,
            depth,
            dropout,
            negative_slope,
            packed_dropout,
            attention_levels,
            attention_gates,
        )
    if architecture == "corruption_aware":
        if attention_gates:
            raise ValueError("attention_gates is a setting of the unet architecture")
        if in_channels != out_channels:
            raise ValueError(
                "the corruption-aware model restores the channels it is given: "
                f"in_channels ({in_channels}) must equal out_channels ({out_channels})"
            )
        return CorruptionAwareUNet(
            in_channels,
            base_channels,
            depth,
            dropout,
            negative_slope,
            packed_dropout,
            global_context=global_context,
            attention_levels=attention_levels,
            refine_channels=refine_channels,
            cross_channel=cross_channel,
            colour_sigma=colour_sigma,
            luminance_sigma=luminance_sigma,
        )
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")
