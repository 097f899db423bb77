"""A network that restores images: what training's LightningModule and inference's plain
:class:`Denoiser` share. Inference builds the plain one, so that ``predict`` never imports
Lightning, torchmetrics or what they pull in."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

import torch
from torch import nn

from denoise.models.networks import Design


class Restoring:
    """The network ``net`` of a :class:`Design`, and how it restores images: in its memory
    layout, one pass, in the weights' precision. Inference modes (bf16, flips and rotations)
    wrap it (:class:`Autocast`, :class:`~denoise.models.self_ensemble.SelfEnsemble`) and
    leave it as it is. Mixed into an ``nn.Module`` that has a ``device``."""

    net: nn.Module
    device: torch.device
    views = 1  # one orientation: SelfEnsemble averages over more
    autocast: torch.dtype | None = None  # the weights' precision: Autocast runs in another

    def build(self, design: Design) -> None:
        """Build ``net`` in its memory layout; called from the module's ``__init__``."""
        self.memory_format = (
            torch.channels_last if design.channels_last else torch.contiguous_format
        )
        # oneDNN's fastest conv layout
        self.net = design.network().to(memory_format=self.memory_format)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        restored = self.net(noisy.contiguous(memory_format=self.memory_format))
        return restored.contiguous()  # 1-3 channels: cheap, and safe for .view() in metrics

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        """Restored images in float32, clipped to the valid range [0, 1]."""
        return self.denoise_and_decide(noisy)[0]

    @torch.no_grad()
    def denoise_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`denoise`, plus where the network judged pixels noise (None for a network
        that makes no such decision: the reference U-Net rewrites every pixel)."""
        decide = getattr(self.net, "restore_and_decide", None)
        if decide is None:
            restored, judged_noise = self(noisy), None  # type: ignore[operator]
        else:
            restored, judged_noise = decide(noisy.contiguous(memory_format=self.memory_format))
        return restored.float().clamp(0.0, 1.0).contiguous(), judged_noise


class Restorer(Protocol):
    """What tiling, ``predict`` and ``evaluate`` use of a model: a :class:`Restoring` model
    as loaded, or a mode wrapped around one."""

    @property
    def hparams(self) -> Hyperparameters: ...
    @property
    def net(self) -> nn.Module: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def dtype(self) -> torch.dtype: ...
    @property
    def views(self) -> int: ...
    @property
    def autocast(self) -> torch.dtype | None: ...
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor: ...
    def denoise_and_decide(
        self, noisy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class Wrapper:
    """An inference mode around a restorer, which it leaves unchanged: what the mode does not
    change (the network, its settings, device and weights' dtype) is the wrapped one's."""

    def __init__(self, inner: Restorer) -> None:
        self.inner = inner

    @property
    def hparams(self) -> Hyperparameters:
        return self.inner.hparams

    @property
    def net(self) -> nn.Module:
        return self.inner.net

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        """Restored images in float32, clipped to [0, 1], in this mode."""
        return self.denoise_and_decide(noisy)[0]

    def denoise_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class Autocast(Wrapper):
    """``inner`` with its convolutions in ``dtype`` (bf16): what the network keeps in float32
    under autocast (the corruption-aware blend that keeps clean pixels) stays float32, and so
    does the clipped result."""

    def __init__(self, inner: Restorer, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(inner)
        self.autocast = dtype

    @property
    def views(self) -> int:
        return self.inner.views

    def denoise_and_decide(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.autocast(self.device.type, dtype=self.autocast):
            return self.inner.denoise_and_decide(noisy)


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
