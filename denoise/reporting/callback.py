"""The Hydra callback that ends every ``python -m denoise.train -m ...`` with its sweep report.

Hydra builds it at every ``train`` start (``conf/hydra/default.yaml``), so this module imports
nothing heavy: no torch, no Lightning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from denoise.files.outputs import absolute
from denoise.reporting.sweep_table import write_report

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """Registered in ``conf/hydra/default.yaml``: every multirun ends with its report.
    A report that cannot be written is a warning: it must never fail the sweep."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Say where the sweep goes before its first job starts, and make the folder: a
        sweeper may keep its own files there before any job runs (Optuna's study)."""
        try:
            sweep_dir = _sweep_dir(config)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            print(f"This sweep writes into {absolute(sweep_dir)}")
        except ValueError as error:
            log.warning("No sweep folder: %s", error)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(config)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Hydra's basic sweeper stops at the first failed job without calling
        ``on_multirun_end``, so report then: the failure shows beside the finished jobs."""
        mode = OmegaConf.select(config, "hydra.mode", default=None)
        status = getattr(job_return, "status", None)
        if getattr(mode, "name", mode) == "MULTIRUN" and getattr(status, "name", None) == "FAILED":
            self._report(config)

    @staticmethod
    def _report(config: DictConfig) -> None:
        try:
            print(write_report(_sweep_dir(config)))
        except Exception as error:
            log.warning("No sweep report: %s: %s", type(error).__name__, error)


def _sweep_dir(config: DictConfig) -> Path:
    """``hydra.sweep.dir``, anchored at the launch folder (a job may have changed directory)."""
    sweep_dir = OmegaConf.select(config, "hydra.sweep.dir", default=None)
    if not sweep_dir:
        raise ValueError("the config has no hydra.sweep.dir")
    cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
    sweep_dir = Path(str(sweep_dir))
    return sweep_dir if sweep_dir.is_absolute() or not cwd else Path(cwd) / sweep_dir
