"""Train, validate and test a denoiser: ``python -m denoise.train [hydra overrides]``.

Every run writes its config (``.hydra/``), checkpoints, TensorBoard logs and
``summary.json`` into its own folder under ``outputs/``; ``-m`` sweeps one folder per job.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from denoise import CONFIG_PATH
from denoise.files.outputs import absolute, discard_unused_output_dir, folder_listing
from denoise.runtime.errors import is_user_error, user_errors
from denoise.runtime.machine import describe_machine, precision_note
from denoise.training.callbacks import MetricHistory
from denoise.training.preflight import check_resume, check_training_settings
from denoise.training.summary import RunSummary, format_test_table
from denoise.training.warm_start import check_init_from, init_path, warm_start

log = logging.getLogger(__name__)

HPARAM_SECTIONS = ("seed", "data", "model", "trainer")


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, and return ``cfg.optimized_metric`` for sweepers."""
    output_dir = Path(cfg.paths.output_dir)
    log.info("This run writes into %s", absolute(output_dir))
    check_training_settings(cfg)
    check_resume(cfg)
    check_init_from(cfg.get("init_from"), cfg.model.architecture)
    summary = RunSummary(output_dir)
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
        with summary.alive():  # pid, host and a heartbeat: a killed run reads as died
            result = _fit_and_test(cfg, summary)
    except BaseException as error:
        summary.update(
            status="failed",
            error=f"{type(error).__name__}: {error}",
            wall_time_s=round(time.perf_counter() - started, 1),
        )
        if not is_user_error(error):  # a user error's bookkeeping-only folder goes (main)
            log.info(folder_listing(output_dir, "The failed run left"))
        raise
    summary.update(status="completed", wall_time_s=round(time.perf_counter() - started, 1))
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
    log.info(precision_note(cfg.trainer.precision))
    history = MetricHistory()
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, history], logger=loggers or False
    )

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    best_epoch = history.best(checkpoint.monitor, checkpoint.mode) if checkpoint else None
    best_epoch = best_epoch or (history.epochs[-1] if history.epochs else None)
    summary.update(
        best_checkpoint=best_path or None,
        best_epoch=best_epoch,
        val_history=history.epochs,
        epochs_completed=trainer.current_epoch,
    )

    test_metrics: dict[str, float] = {}
    if cfg.get("test", True):
        results = trainer.test(
            model, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True
        )
        test_metrics = {name: float(value) for name, value in results[0].items()}
        print(f"\nTest metrics of {'the best checkpoint' if best_path else 'the final model'}:")
        print(format_test_table(test_metrics) + "\n")
        summary.update(test=test_metrics)

    final = {**(best_epoch or {}), **test_metrics}
    _log_hparams(cfg, loggers, final)
    value = final.get(cfg.get("optimized_metric") or "")
    return None if value is None else float(value)


def _log_hparams(cfg: DictConfig, loggers: list[Any], final: dict[str, float]) -> None:
    """Fill TensorBoard's HPARAMS tab: the config beside the final metrics."""
    params = {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in HPARAM_SECTIONS
        if key in cfg
    }
    metrics = {
        f"hp/{name.replace('/', '_')}": value for name, value in final.items() if name != "epoch"
    }
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger) and metrics:
            logger.log_hyperparams(params, metrics=metrics)
            logger.finalize("success")


def _task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors(cleanup=discard_unused_output_dir):
        return train(cfg)


if __name__ == "__main__":
    main()
