"""Experiment tracking: the loggers of a run (``conf/logger/``: TensorBoard, CSV, MLflow), each
opened per job, given the same final record and closed, whether the job succeeds or fails.

- :func:`check_loggers` (preflight): a logger whose package is missing is a one-line user error.
- :func:`open_loggers`: builds the configured loggers; MLflow's run is named after the run
  folder, and keeps any artifacts there when its store lies in that folder (the default).
- :func:`finish_loggers`: the config sections (params) and the final ``hp/…`` metrics (the best
  epoch's validation metrics and the test metrics), the same for every logger, then closes them.

Lightning closes the loggers itself when ``fit`` or ``test`` raises (an MLflow run ends as
FAILED). A job that fails elsewhere leaves its loggers here: they are closed as failed before
the next job of the same process opens its own (a ``-m`` sweep), or when the process exits.
Closing also undoes what MLflow's logger does to the process: it sets ``MLFLOW_TRACKING_URI``
(MLflow's global URI, for subprocesses), which the next sweep job's config would read as the
user's choice and so log into this job's store.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from denoise.runtime.errors import SettingError

log = logging.getLogger(__name__)

HP_PREFIX = "hp/"
INSTALL = 'pip install -e ".[scale]"'
# Tracking stores that MLflow keeps in a database through SQLAlchemy (and migrates with Alembic).
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# CSVLogger warns about any non-empty folder, but only deletes an earlier metrics.csv.
CSV_FOLDER_WARNING = r"Experiment logs directory .* exists and is not empty"

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"

_open: list[Logger] = []  # this process's loggers not yet closed (see the module doc)
_tracking_uri_before: str | None = None  # MLFLOW_TRACKING_URI as the open loggers found it


def check_loggers(cfg: DictConfig) -> None:
    """Every configured logger can be built here: its optional package is installed."""
    for key, node in (cfg.get("logger") or {}).items():
        if not _is_mlflow(node):
            continue
        if not _importable("mlflow"):
            raise SettingError(f"logger={key}: mlflow is not installed ({INSTALL})")
        scheme = _scheme(str(node.get("tracking_uri") or ""))
        if scheme in SQL_SCHEMES and not (_importable("sqlalchemy") and _importable("alembic")):
            raise SettingError(
                f"logger={key}: its {scheme} tracking store needs sqlalchemy and alembic, "
                f"which are not installed ({INSTALL})"
            )


def open_loggers(cfg: DictConfig) -> list[Logger]:
    """The loggers of ``cfg.logger``, built for this job (after closing, as failed, those that
    an earlier job of this process left open)."""
    global _tracking_uri_before
    close_open_loggers()
    _tracking_uri_before = os.environ.get(TRACKING_URI_VARIABLE)
    output_dir = Path(cfg.paths.output_dir)
    loggers = [
        _build(node, output_dir) for node in (cfg.get("logger") or {}).values() if node is not None
    ]
    _open.extend(loggers)
    return loggers


def hparams(cfg: DictConfig, sections: Iterable[str]) -> dict[str, Any]:
    """The config ``sections`` as plain values, resolved: what each logger records as params."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in sections
        if key in cfg
    }


def final_metrics(final: Mapping[str, float]) -> dict[str, float]:
    """``{"val/psnr": …, "test/psnr": …}`` -> ``{"hp/val_psnr": …, "hp/test_psnr": …}``."""
    return {
        f"{HP_PREFIX}{name.replace('/', '_')}": float(value)
        for name, value in final.items()
        if name != "epoch"
    }


def finish_loggers(
    loggers: Sequence[Logger], params: Mapping[str, Any], metrics: Mapping[str, float]
) -> None:
    """Give every logger the same ``params`` and ``hp/`` ``metrics``, then close it. A logger
    whose ``log_hyperparams`` takes the metrics (TensorBoard: its HPARAMS tab shows them beside
    the params) gets them there, at step 0; every other one as a last ``log_metrics`` at step 0
    (CSV: the last row of metrics.csv; MLflow: the run's metrics)."""
    try:
        for logger in loggers:
            if "metrics" in inspect.signature(logger.log_hyperparams).parameters:
                logger.log_hyperparams(dict(params), metrics=dict(metrics))
            else:
                logger.log_hyperparams(dict(params))
                if metrics:
                    logger.log_metrics(dict(metrics), step=0)
    except BaseException:
        close_loggers(loggers, "failed")
        raise
    close_loggers(loggers, "success")


def close_loggers(loggers: Sequence[Logger], status: str) -> None:
    """``finalize(status)`` each logger once more (Lightning's own ``finalize`` after ``fit``
    and ``test`` is not the end of the job): files flushed and closed, an MLflow run ended as
    FINISHED (``success``) or FAILED (``failed``), MLflow's tracking URI as it was before. On
    success, the first error is raised after every logger had its turn; on failure it is only
    logged, not to hide the job's own error."""
    first_error: Exception | None = None
    for logger in loggers:
        try:
            logger.finalize(status)
        except Exception as error:  # e.g. a tracking server that went away
            log.warning("Could not close the %s logger: %s", type(logger).__name__, error)
            first_error = first_error or error
        finally:
            if logger in _open:
                _open.remove(logger)
    if any(isinstance(logger, MLFlowLogger) for logger in loggers):
        import mlflow  # imported already: the logger needs it

        mlflow.set_tracking_uri(_tracking_uri_before)
        if _tracking_uri_before is None:
            os.environ.pop(TRACKING_URI_VARIABLE, None)
    if first_error is not None and status == "success":
        raise first_error


@atexit.register
def close_open_loggers() -> None:
    """Close, as failed, the loggers that a failed job left open (see the module doc)."""
    close_loggers(list(_open), "failed")


def _build(node: DictConfig, output_dir: Path) -> Logger:
    if _is_mlflow(node):
        return instantiate(node, **_mlflow_defaults(node, output_dir))
    logger = instantiate(node)
    if isinstance(logger, CSVLogger):
        with warnings.catch_warnings():
            if not (Path(logger.log_dir) / "metrics.csv").exists():  # nothing to lose
                warnings.filterwarnings("ignore", CSV_FOLDER_WARNING)
            _ = logger.experiment  # the writer checks its folder as it is created
    return logger


def _mlflow_defaults(node: DictConfig, output_dir: Path) -> dict[str, str]:
    """``run_name: null`` -> the run folder's name (a sweep job's: its number and overrides);
    ``artifact_location: null`` with the store in the run folder -> ``mlartifacts/`` there,
    not MLflow's ``./mlruns`` of the folder the command runs from."""
    defaults = {}
    if node.get("run_name") is None:
        defaults["run_name"] = output_dir.name
    if node.get("artifact_location") is None:
        store = _local_path(str(node.get("tracking_uri") or ""))
        if store is not None and store.resolve().is_relative_to(output_dir.resolve()):
            defaults["artifact_location"] = str(output_dir / "mlartifacts")
    return defaults


def _local_path(uri: str) -> Path | None:
    """The path of a local MLflow store (``sqlite:///…`` or ``file:…``), else None."""
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :]))
    if uri.startswith("file:"):
        return Path(unquote(uri[len("file:") :].removeprefix("//")))
    return None


def _is_mlflow(node: Any) -> bool:
    target = str(node.get("_target_", "")) if isinstance(node, Mapping) else ""
    return target.rsplit(".", 1)[-1] == "MLFlowLogger"


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
