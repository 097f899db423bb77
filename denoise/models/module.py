"""The LightningModule: a U-Net trained to map noisy images to clean ones. Inference does not
need it: :class:`denoise.models.denoiser.Denoiser` loads the same checkpoints without Lightning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from denoise.models.denoiser import Restoring
from denoise.models.losses import make_loss
from denoise.models.metrics import image_metrics
from denoise.models.networks import Design

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SCHEDULER_KEYS = ("interval", "frequency", "monitor")  # Lightning's keys, not the scheduler's


def _plain(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A plain dict, so that checkpoints hold no OmegaConf objects."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return None if config is None else dict(config)


class DenoisingModule(Restoring, L.LightningModule):
    """Trains the network :class:`Design` describes: ``net`` (a ``_target_`` config of any
    ``nn.Module``), ``loss``, ``optimizer``, ``scheduler``, ``channels_last``; the flat
    settings of older checkpoints are read too (:meth:`Design.from_settings`). They are saved
    as plain values with the defaults filled in, so that
    ``DenoisingModule.load_from_checkpoint(path)`` needs nothing else."""

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__()
        design = Design.from_settings(
            {
                key: _plain(value) if isinstance(value, DictConfig) else value
                for key, value in hyper_parameters.items()
            }
        )
        design = replace(
            design,
            optimizer=_plain(design.optimizer) or dict(DEFAULT_OPTIMIZER),
            scheduler=_plain(design.scheduler),
        )
        self.save_hyperparameters(asdict(design))  # plain dicts, in the design's order
        self.build(design)
        self.loss = make_loss(design.loss)
        channels = design.net.get("in_channels", 1)
        self.example_input_array = torch.zeros(1, channels, 48, 48)  # model summary
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
