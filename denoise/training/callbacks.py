"""Callbacks: a fixed preview grid of validation images, and the per-epoch metric history
(also written into the live run's ``summary.json``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from denoise.training.summary import active_summary


def image_grid(columns: list[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """One row per image and one column per tensor (e.g. noisy | denoised | clean),
    as a ``(C, H', W')`` tensor with white gaps, ready for TensorBoard's ``add_image``."""
    stacked = torch.stack(columns, dim=1)  # (N, columns, C, H, W)
    stacked = torch.nn.functional.pad(stacked, (0, gap, 0, gap), value=1.0)
    count, width, channels, height, side = stacked.shape
    grid = stacked.permute(2, 0, 3, 1, 4).reshape(channels, count * height, width * side)
    return grid[:, :-gap, :-gap]


class ValidationPreview(L.Callback):
    """Logs the same validation images every epoch as noisy | denoised | clean."""

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = num_images

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking:
            return
        count = self.num_images
        columns = [batch["noisy"][:count], outputs[:count], batch["clean"][:count]]
        grid = image_grid([column.detach().float().cpu() for column in columns])
        for logger in trainer.loggers:
            add_image = getattr(logger.experiment, "add_image", None)
            if add_image is not None:
                add_image("val/noisy_denoised_clean", grid, global_step=trainer.current_epoch)


class MetricHistory(L.Callback):
    """Keeps every epoch's validation metrics, for the run summary and the sweep report.

    Inside ``RunSummary.alive()`` it also writes them into ``summary.json`` as each epoch
    ends, so that a run killed mid-way still shows the epochs it completed; its state goes
    into checkpoints, so a resumed run starts with the epochs of its checkpoint."""

    def __init__(self, prefix: str = "val/") -> None:
        self.prefix = prefix
        self.epochs: list[dict[str, float]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a checkpoint is restored: a resumed run shows its inherited epochs at once."""
        self._record(epochs_completed=trainer.current_epoch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(self.prefix)
        }
        self.epochs.append({"epoch": trainer.current_epoch, **metrics})
        self._record()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(epochs_completed=trainer.current_epoch + 1)

    def _record(self, **fields: Any) -> None:
        summary = active_summary()
        if summary is not None:
            summary.update(val_history=self.epochs, **fields)

    def best(self, monitor: str, mode: str = "min") -> dict[str, float] | None:
        """The epoch whose ``monitor`` value was best (the one ModelCheckpoint keeps)."""
        scored = [epoch for epoch in self.epochs if monitor in epoch]
        if not scored:
            return None
        choose = min if mode == "min" else max
        return choose(scored, key=lambda epoch: epoch[monitor])

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict.get("epochs", []))
