"""The work of ``python -m denoise.train`` (its usage: :mod:`denoise.train`): check the
settings before anything starts, build the data, model, loggers and Trainer, fit, test the best
checkpoint, and record the run in ``summary.json``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from denoise.files.outputs import (
    absolute,
    folder_listing,
    is_sweep_job,
)
from denoise.inference.checkpoints import read_checkpoint
from denoise.models.networks import DROPOUT_SHORTCUT
from denoise.runtime.distributed import is_rank_zero_process
from denoise.runtime.errors import UserError, is_user_error
from denoise.runtime.job_share import claim_share
from denoise.runtime.machine import describe_machine, precision_note
from denoise.training.callbacks import MetricHistory
from denoise.training.memory import check_network_size
from denoise.training.preflight import (
    check_resume,
    check_shards,
    check_training_settings,
    world_size,
)
from denoise.training.quiet import quiet_lightning
from denoise.training.recipe import apply_stage
from denoise.training.summary import RunSummary, format_test_table
from denoise.training.tracking import final_metrics, finish_loggers, hparams, open_loggers
from denoise.training.warm_start import check_init_from, init_path, warm_start

log = logging.getLogger(__name__)

HPARAM_SECTIONS = ("seed", "data", "model", "trainer")


def apply_dropout_shortcut(cfg: DictConfig) -> None:
    """``model.dropout=0.2`` (the reference notebook's name) sets ``model.net.dropout``, so that
    the checks, a resume's comparison and the checkpoint all see the network's own setting."""
    dropout = cfg.model.get(DROPOUT_SHORTCUT)
    if dropout is None:
        return
    with open_dict(cfg):
        cfg.model.net.dropout = dropout
        cfg.model[DROPOUT_SHORTCUT] = None


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, and return ``cfg.optimized_metric`` for sweepers.

    In a distributed run (``trainer=ddp``) every process runs this; only rank zero writes
    ``summary.json`` (see ``RunSummary``), checkpoints and logs, and says what it wrote."""
    output_dir = Path(cfg.paths.output_dir)
    rank_zero = is_rank_zero_process()
    if rank_zero:
        log.info("This run writes into %s", absolute(output_dir))
    summary = RunSummary(output_dir)
    try:
        apply_stage(cfg)  # the recipe's stage first: every check sees the values that train
        apply_dropout_shortcut(cfg)
        check_training_settings(cfg)
        check_resume(cfg)
        check_init_from(cfg.get("init_from"), cfg.model.net)
    except UserError as error:
        if is_sweep_job():  # the job's folder stays: its summary says why it never started
            summary.update(status="failed", overrides=_task_overrides(), error=str(error))
        raise
    started = time.perf_counter()
    summary.update(
        status="running",
        overrides=_task_overrides(),
        output_dir=str(output_dir),
        machine=describe_machine(),
        resumed_from=cfg.get("ckpt_path"),
        warm_started_from=str(init_path(cfg.init_from)) if cfg.get("init_from") else None,
    )
    try:
        # pid, host and a heartbeat: a killed run reads as died; a sweep job side by side
        # with others takes its share of the cores and GPUs
        with summary.alive(), claim_share(cfg) as share, quiet_lightning():
            summary.update(torch_threads=torch.get_num_threads(), gpu=share.gpu)
            result = _fit_and_test(cfg, summary)
    except BaseException as error:
        summary.update(
            status="failed",
            error=f"{type(error).__name__}: {error}",
            wall_time_s=round(time.perf_counter() - started, 1),
        )
        if rank_zero and not is_user_error(error):  # a user error's record goes (main)
            log.info(folder_listing(output_dir, "The failed run left"))
        raise
    summary.update(status="completed", wall_time_s=round(time.perf_counter() - started, 1))
    if rank_zero:
        log.info(folder_listing(output_dir, "Outputs of this run in"))
    return result


def _fit_and_test(cfg: DictConfig, summary: RunSummary) -> float | None:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        log.info("Seed %s: weights, shuffling and training noise repeat exactly", cfg.seed)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    if cfg.get("init_from") and not cfg.get("ckpt_path"):  # a resume brings its own weights
        warm_start(model, cfg.init_from)
    datamodule.prepare_data()  # the data's errors come now, before the Trainer starts
    datamodule.setup("fit")
    splits = ("val", "test") if cfg.get("test", True) else ("val",)
    check_shards({split: len(datamodule.datasets[split]) for split in splits}, world_size(cfg))
    check_network_size(cfg, len(datamodule.datasets["train"]))  # a whole batch, now it is known
    log.info(precision_note(cfg.trainer.precision))
    history = MetricHistory()
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    loggers = open_loggers(cfg)  # closed by _log_hparams, or as failed (tracking.py)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, history], logger=loggers or False
    )

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    checkpoint = _best_checkpoint(trainer)
    epochs_completed = trainer.current_epoch
    if not history.epochs and _recover_history(history, checkpoint):  # ddp_spawn
        epochs_completed = max(epochs_completed, history.epochs[-1]["epoch"] + 1)
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    best_epoch = history.best(checkpoint.monitor, checkpoint.mode) if checkpoint else None
    best_epoch = best_epoch or (history.epochs[-1] if history.epochs else None)
    summary.update(
        best_checkpoint=best_path or None,
        best_epoch=best_epoch,
        val_history=history.epochs,
        epochs_completed=epochs_completed,
    )

    test_metrics: dict[str, float] = {}
    if cfg.get("test", True):
        results = trainer.test(  # verbose=False: the table below, not Lightning's as well
            model,
            datamodule=datamodule,
            ckpt_path=best_path or None,
            weights_only=True,
            verbose=False,
        )
        test_metrics = {name: float(value) for name, value in results[0].items()}
        if trainer.is_global_zero:  # every process has the metrics (over the whole split)
            print(f"\nTest metrics of {'the best checkpoint' if best_path else 'the final model'}:")
            print(format_test_table(test_metrics) + "\n")
        summary.update(test=test_metrics)

    final = {**(best_epoch or {}), **test_metrics}
    _log_hparams(cfg, loggers, final)
    value = final.get(cfg.get("optimized_metric") or "")
    return None if value is None else float(value)


def _best_checkpoint(trainer: L.Trainer) -> Any:
    """The checkpoint callback that keeps the best epoch (one with a monitor: ``best.ckpt``,
    not the every-epoch ``last.ckpt``), else Lightning's first."""
    monitored = [c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)]
    return monitored[0] if monitored else trainer.checkpoint_callback


def _recover_history(history: MetricHistory, checkpoint: Any) -> bool:
    """A strategy that spawns its processes (``ddp_spawn``) fits in them, and this process's
    callbacks see none of the epochs: they come back from the last checkpoint (or the best),
    which holds the history's state. Whether any came back."""
    if checkpoint is None or not checkpoint.dirpath:
        return False
    last = (
        Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
    )
    for path in (last, Path(checkpoint.best_model_path or last)):
        if path.is_file():
            state = read_checkpoint(path).get("callbacks", {}).get(history.state_key)
            if state:
                history.load_state_dict(state)
                return bool(history.epochs)
    return False


def _log_hparams(cfg: DictConfig, loggers: list[Any], final: dict[str, float]) -> None:
    """Every logger gets the config sections beside the final metrics (``hp/…``; TensorBoard's
    HPARAMS tab, CSV's hparams.yaml and last row, MLflow's params and metrics), then closes."""
    finish_loggers(loggers, hparams(cfg, HPARAM_SECTIONS), final_metrics(final))


def _task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
