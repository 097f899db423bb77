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


LOSSES = {"mse": nn.MSELoss, "psnr": NegativePSNRLoss}


def make_loss(name: str) -> nn.Module:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]()
