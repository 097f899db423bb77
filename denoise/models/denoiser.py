"""A network that restores images: what training's LightningModule and inference's plain
:class:`Denoiser` share. Inference builds the plain one, so that ``predict`` never imports
Lightning, torchmetrics or what they pull in."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from denoise.models.networks import Design
from denoise.models.self_ensemble import restore_in_views


class Restoring:
    """The network ``net`` of a :class:`Design`, and how it restores images: in its memory
    layout, optionally in bf16 (``inference_autocast``) and averaged over flips and rotations
    (``inference_views``). Mixed into an ``nn.Module`` that has a ``device``."""

    net: nn.Module
    device: torch.device

    def build(self, design: Design) -> None:
        """Build ``net`` and the restoring settings; called from the module's ``__init__``."""
        self.memory_format = (
            torch.channels_last if design.channels_last else torch.contiguous_format
        )
        # oneDNN's fastest conv layout
        self.net = design.network().to(memory_format=self.memory_format)
        self.inference_autocast: torch.dtype | None = None  # see denoise()
        self.inference_views = 1  # see denoise(): 2, 4 or 8 average over flips and rotations

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        restored = self.net(noisy.contiguous(memory_format=self.memory_format))
        return restored.contiguous()  # 1-3 channels: cheap, and safe for .view() in metrics

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        """Restored images in float32, clipped to the valid range [0, 1]. With
        ``inference_autocast`` (set by ``load_denoiser``) the convolutions run in that dtype;
        what they feed (the corruption-aware blend that keeps clean pixels) stays float32.
        With ``inference_views`` above 1 the result is averaged over that many flips and
        rotations of the input (:mod:`denoise.models.self_ensemble`)."""
        return self.denoise_and_decide(noisy)[0]

    @torch.no_grad()
    def denoise_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`denoise`, plus where the network judged pixels noise (None for a network
        that makes no such decision: the reference U-Net rewrites every pixel; with several
        views, where most of them did)."""
        restored, judged_noise = restore_in_views(self._restore_once, noisy, self.inference_views)
        return restored.contiguous(), judged_noise

    def _restore_once(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        decide = getattr(self.net, "restore_and_decide", None)
        autocast = self.inference_autocast
        with torch.autocast(self.device.type, dtype=autocast, enabled=autocast is not None):
            if decide is None:
                restored, judged_noise = self(noisy), None  # type: ignore[operator]
            else:
                restored, judged_noise = decide(noisy.contiguous(memory_format=self.memory_format))
        return restored.float().clamp(0.0, 1.0), judged_noise


class Hyperparameters(dict):
    """The design's settings by key or as attributes (``hparams.net``), as a
    LightningModule's ``hparams`` gives them, so that code serves either model."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Denoiser(Restoring, nn.Module):
    """A trained network for inference, without the training machinery: its state_dict has
    the LightningModule's keys (``net.…``), so it loads the same checkpoints."""

    def __init__(self, design: Design) -> None:
        super().__init__()
        self.hparams = Hyperparameters(asdict(design))
        self.build(design)

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
