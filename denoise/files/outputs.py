"""Telling the user where a command's outputs went: relative paths depend on the folder the
command ran from, so every command names its outputs by absolute path, at start and end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from denoise.files.paths import absolute
from denoise.runtime.distributed import is_rank_zero_process


def human_size(size: int) -> str:
    """``1536`` -> ``1.5 kB``: decimal units, as file managers show them."""
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


def folder_listing(folder: str | os.PathLike, title: str) -> str:
    """``title`` and the folder's absolute path, then each file below it with its size,
    so that a run's 100 MB checkpoint never goes unnoticed."""
    folder = absolute(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    if not files:
        return f"{title} {folder}: no files"
    width = max(len(str(path.relative_to(folder))) for path in files)
    lines = [f"{title} {folder}:"]
    lines += [
        f"  {path.relative_to(folder)!s:<{width}}  {human_size(path.stat().st_size):>9}"
        for path in files
    ]
    return "\n".join(lines)


RUN_RECORD = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "summary.json")


class RunFolderOrigin(Callback):
    """Hydra makes a run's folder, with every parent it lacks, before the command's code runs;
    this callback (``hydra/callbacks: run_folder``) notes just before that which of them
    already existed, so that a run stopped by a user error removes only the folders it made,
    never an empty one the user had made."""

    run_folder: Path | None = None  # the run folder of this process's single run
    existed: Path | None = None  # its deepest folder (itself, or a parent) there before

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(os.path.abspath(str(config.hydra.run.dir)))  # as Hydra makes it
        RunFolderOrigin.run_folder = folder
        RunFolderOrigin.existed = next(path for path in (folder, *folder.parents) if path.is_dir())


def discard_run_record(
    folder: str | os.PathLike, log_name: str, existed: str | os.PathLike | None = None
) -> bool:
    """Remove a run folder that holds nothing but its own record (Hydra's ``.hydra/``, the
    command's log, ``summary.json``): a command stopped by a user error before doing any work
    leaves no folder behind. A folder holding anything else is kept. Of the folder and its
    parents only those below ``existed`` go, the ones the run made (None: not known, so only
    the run folder itself), and never the current folder or one above it. Returns whether the
    folder went."""
    folder = absolute(folder)
    if not folder.is_dir():
        return False
    files = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    if not files <= {*RUN_RECORD, log_name}:
        return False
    for name in files:
        (folder / name).unlink(missing_ok=True)
    chain = (folder, *folder.parents)
    there = absolute(existed) if existed is not None else None
    made = chain[: chain.index(there)] if there in chain else chain[:1]
    keep = {absolute(Path.cwd()), *absolute(Path.cwd()).parents}
    for empty in (folder / ".hydra", *made):
        if empty in keep:
            break
        try:
            empty.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty: another run lives there
            break
    return not folder.exists()


def is_sweep_job() -> bool:
    """Whether this process runs one job of a Hydra ``-m`` sweep (whose folder stays)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def discard_unused_output_dir() -> None:
    """After a user error: a single run's folder that holds only its record goes (with the
    parents the run made for it); a sweep's job folder stays, so that the sweep report shows
    why the job failed. Only rank zero of a distributed run cleans up: the folder is its own."""
    if not is_rank_zero_process():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.RUN and hydra_cfg.output_subdir is not None:
        folder = absolute(hydra_cfg.runtime.output_dir)
        existed = RunFolderOrigin.existed if RunFolderOrigin.run_folder == folder else None
        discard_run_record(folder, f"{hydra_cfg.job.name}.log", existed)
