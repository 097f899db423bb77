"""Training losses, chosen by name in the model config."""

from __future__ import annotations

import torch
from torch import nn


class NegativePSNRLoss(nn.Module):
    """Minus the mean per-image PSNR (data range 1), i.e. the metric the evaluation reports.

    MSE pooled over a batch is dominated by the noisiest images: a model trained on 0-95%
    noise with it barely cares whether a 2% image ends at 40 or 46 dB. Averaging the
    log of each image's error weighs every image's dB gain alike. ``floor`` (an MSE,
    1e-6 = 60 dB) keeps the gradient bounded on images restored almost exactly.
    """

    def __init__(self, floor: float = 1e-6) -> None:
        super().__init__()
        self.floor = floor

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        errors = (prediction - target).pow(2).flatten(1).mean(dim=1)
        return (10.0 * torch.log10(errors + self.floor)).mean()


class NegativePSNRWithL1Loss(NegativePSNRLoss):
    """:class:`NegativePSNRLoss` averaged with its L1 counterpart, ``20 log10(mean |error|)``
    per image (the PSNR an image would have if its RMS error were its mean absolute error).

    Published blind denoisers train with L1 terms: an L1 gradient does not fade as a pixel
    gets close, which sharpens edges that MSE leaves soft. Both halves are in dB per image,
    so every noise level still weighs alike.
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        absolute = (prediction - target).abs().flatten(1).mean(dim=1)
        l1_decibels = 20.0 * torch.log10(absolute + self.floor**0.5)
        return 0.5 * (super().forward(prediction, target) + l1_decibels.mean())


LOSSES = {"mse": nn.MSELoss, "psnr": NegativePSNRLoss, "psnr_l1": NegativePSNRWithL1Loss}


def make_loss(name: str) -> nn.Module:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]()
