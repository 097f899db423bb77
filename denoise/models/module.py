"""The LightningModule: a U-Net trained with MSE to map noisy images to clean ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from denoise.models.corruption_aware import CorruptionAwareUNet
from denoise.models.losses import make_loss
from denoise.models.metrics import image_metrics
from denoise.models.self_ensemble import restore_in_views
from denoise.models.unet import DenoisingUNet

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SCHEDULER_KEYS = ("interval", "frequency", "monitor")  # Lightning's keys, not the scheduler's
ARCHITECTURES = ("unet", "corruption_aware")
# Parts a network may gain over the checkpoint it warm-starts from: each starts out computing
# nothing (a zero output projection), so the grown network computes what the old one did.
IDENTITY_AT_START = ("attention", "refiner")


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
) -> nn.Module:
    """``unet``: the reference U-Net, re-synthesising every pixel. ``corruption_aware``:
    the same U-Net as a backbone that only rewrites black or white pixels (see
    :mod:`denoise.models.corruption_aware`)."""
    if architecture == "unet":
        if global_context:
            raise ValueError("global_context is a setting of the corruption_aware architecture")
        if refine_channels:
            raise ValueError("refine_channels is a setting of the corruption_aware architecture")
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
        )
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")


def _plain(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A plain dict, so that checkpoints hold no OmegaConf objects."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return None if config is None else dict(config)


class DenoisingModule(L.LightningModule):
    """Wraps the network :func:`build_network` makes; every hyperparameter is a flat, saved
    argument so that ``DenoisingModule.load_from_checkpoint(path)`` needs nothing else."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        depth: int = 5,
        dropout: float = 0.2,
        negative_slope: float = 0.1,
        channels_last: bool = True,
        packed_dropout: bool = True,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        architecture: str = "unet",
        loss: str = "mse",
        global_context: bool = False,
        attention_levels: int = 0,
        refine_channels: int = 0,
        attention_gates: bool = False,
    ) -> None:
        super().__init__()
        optimizer = _plain(optimizer) or dict(DEFAULT_OPTIMIZER)
        scheduler = _plain(scheduler)
        self.save_hyperparameters()  # reads the arguments as they are now: plain dicts
        self.net = build_network(
            architecture,
            in_channels,
            out_channels,
            base_channels,
            depth,
            dropout,
            negative_slope,
            packed_dropout,
            global_context,
            attention_levels,
            refine_channels,
            attention_gates,
        )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=self.memory_format)  # oneDNN's fastest conv layout
        self.loss = make_loss(loss)
        self.inference_autocast: torch.dtype | None = None  # see denoise()
        self.inference_views = 1  # see denoise(): 2, 4 or 8 average over flips and rotations
        self.example_input_array = torch.zeros(1, in_channels, 48, 48)  # for the model summary
        self.metrics = nn.ModuleDict(
            {stage: image_metrics(f"{stage}/") for stage in ("val", "test")}
        )
        self.noisy_metrics = nn.ModuleDict(
            {stage: image_metrics(f"{stage}/noisy_") for stage in ("val", "test")}
        )
        self.mean_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    @staticmethod
    def logged_figures(stage: str) -> list[str]:
        """What each ``val`` or ``test`` epoch logs, as :meth:`_evaluate` logs it
        (``val/loss``, ``val/psnr``, ``val/noisy_psnr``, …): the names a run can return to
        a sweeper (``optimized_metric``)."""
        return [
            f"{stage}/loss",
            *image_metrics(f"{stage}/").keys(),
            *image_metrics(f"{stage}/noisy_").keys(),
        ]

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
                restored, judged_noise = self(noisy), None
            else:
                restored, judged_noise = decide(noisy.contiguous(memory_format=self.memory_format))
        return restored.float().clamp(0.0, 1.0), judged_noise

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["noisy"]), batch["clean"])
        # Averaged over the processes (every one has as many training batches: Lightning's
        # DistributedSampler pads the split), as the gradients are.
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Log loss and metrics; return the restored images (callbacks preview them).

        In a distributed run each process evaluates its own share of the split, so every
        figure is a torchmetrics object: each gathers its state from every process when it
        computes, at the epoch's end (no step waits for the other processes, which may
        have a batch fewer), and the epoch's figure is over the whole split. The loss is a
        mean weighted by batch size, as Lightning's own; Lightning's ``sync_dist`` is not
        used: its mean divides the integer image count by the number of processes and
        rounds it down (5 images over 2 processes count as 2)."""
        noisy, clean = batch["noisy"], batch["clean"]
        prediction = self(noisy)
        self.mean_loss[stage].update(self.loss(prediction, clean), weight=len(noisy))
        self.log(f"{stage}/loss", self.mean_loss[stage], prog_bar=True)
        restored = prediction.clamp(0.0, 1.0)
        self.metrics[stage].update(restored, clean)
        self.noisy_metrics[stage].update(noisy, clean)
        self.log_dict(self.metrics[stage], prog_bar=stage == "val")
        self.log_dict(self.noisy_metrics[stage])
        return restored

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        settings = dict(self.hparams.scheduler)
        lightning_keys = {key: settings.pop(key) for key in SCHEDULER_KEYS if key in settings}
        scheduler = instantiate(settings, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
