"""Callbacks: a fixed preview grid of validation images, the per-epoch metric history (also
written into the live run's ``summary.json``), checkpoints whose best survives a resume, and a
model summary in one line."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from denoise.files.atomic import atomic_file
from denoise.runtime.distributed import is_rank_zero_process
from denoise.training.summary import active_summary

log = logging.getLogger(__name__)


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
        """After a checkpoint is restored: a resumed run shows its inherited epochs at once.
        The epochs it trains again (a checkpoint written before its epoch ended) replace the
        checkpoint's records of them: the history holds each epoch once."""
        self.epochs = [epoch for epoch in self.epochs if epoch["epoch"] < trainer.current_epoch]
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
        """The epoch whose ``monitor`` value was best (the one ModelCheckpoint keeps: the
        first of equals, and never a NaN while another epoch has a number)."""
        scored = [epoch for epoch in self.epochs if monitor in epoch]
        if not scored:
            return None
        worst = math.inf if mode == "min" else -math.inf
        choose = min if mode == "min" else max
        return choose(scored, key=lambda epoch: _or(epoch[monitor], worst))

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict.get("epochs", []))


def _or(value: float, instead: float) -> float:
    return instead if math.isnan(value) else value


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, whose best survives a resume into another run folder.

    A resumed run writes into a folder of its own, and there Lightning restores only the best
    checkpoint's path, not its score: the resumed run's ``best.ckpt`` would be the best of its
    own epochs, though an epoch before the resume (which the history names best) was better.
    Here the best checkpoints come along, their scores and their files (copied into this
    run's folder). One without a monitor (``last.ckpt``, every epoch) has nothing to bring."""

    @property
    def state_key(self) -> str:
        """Lightning's own key: checkpoints written with a plain ModelCheckpoint resume too."""
        return ModelCheckpoint.__name__ + super().state_key.removeprefix(type(self).__qualname__)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        before = state_dict.get("dirpath")
        if self.dirpath is None or before is None or Path(before) == Path(self.dirpath):
            super().load_state_dict(state_dict)
        elif self.monitor is not None:
            super().load_state_dict(self._brought_over(state_dict))

    def _brought_over(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with its best checkpoints copied into this folder, and named there."""
        copies: dict[str, str] = {}

        def bring(path: str) -> str:
            if path and path not in copies:
                copies[path] = str(Path(self.dirpath or "") / Path(path).name)
                if is_rank_zero_process():  # the folder is rank zero's
                    with open(path, "rb") as source, atomic_file(copies[path]) as target:
                        shutil.copyfileobj(source, target)
            return copies.get(path, path)

        return {
            **state,
            "dirpath": self.dirpath,
            "best_model_path": bring(state.get("best_model_path", "")),
            "best_k_models": {bring(path): v for path, v in state.get("best_k_models", {}).items()},
            "kth_best_model_path": bring(state.get("kth_best_model_path", "")),
            "last_model_path": "",
        }


class BriefModelSummary(ModelSummary):
    """Lightning's model summary in one line: parameters, their size and the FLOPs of one
    example input. Lightning's table (half a screen) lists the loss and metric modules beside
    the network, though they hold no weights. ``enabled`` follows
    ``trainer.enable_model_summary`` (Lightning leaves a summary callback of the run's on)."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(max_depth=1 if enabled else 0)

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        frozen = total_parameters - trainable_parameters
        sizes = dict(summary_data).get("In sizes", [])
        example = f" for an input of {sizes[0]}" if sizes and sizes[0] != "?" else ""
        log.info(
            "Model: %s parameters%s, %.1f MB; %s FLOPs%s",
            get_human_readable_count(total_parameters),
            f" ({get_human_readable_count(frozen)} frozen)" if frozen else "",
            model_size,
            get_human_readable_count(total_flops),
            example,
        )
