"""A sweep job's share of the machine when a launcher runs several jobs side by side.

``hydra/launcher=joblib`` runs ``n_jobs`` jobs at once in worker processes and limits each
one's OpenMP threads to ``cores // n_jobs`` (joblib's own rule, through ``OMP_NUM_THREADS``):
the CPU is shared without our help. What joblib cannot share is the GPUs: every job would
take GPU 0. So a job that trains on one GPU claims a free GPU slot first: a lock file per slot
in the sweep folder, held while the job runs, ``jobs_per_gpu`` slots per GPU (one by default).
With every slot taken the job waits, so a sweep runs one job per GPU however large
``n_jobs`` is, and a running job's threads become the cores divided by the jobs that can
actually run at once. Data loader workers are capped at the same share. A submitit job
(``hydra/launcher=slurm``, ``submitit_local``) takes the ``cpus_per_task`` it asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

SLOT_FOLDER = ".gpu_slots"  # in the sweep folder
WAIT_POLL_S = 2.0


@dataclass(frozen=True)
class JobShare:
    """What a job may use: ``threads`` for torch (None = leave torch's default) and the
    ``gpu`` it claimed (None = no claim: one process, a CPU run or a multi-GPU run)."""

    threads: int | None = None
    gpu: int | None = None


def machine_cores() -> int:
    """The cores this process may run on (a Slurm or taskset allocation, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def jobs_side_by_side(launcher: Mapping[str, Any] | None, cores: int) -> int:
    """How many jobs ``launcher`` (the ``hydra.launcher`` node) runs at once on this
    machine: joblib's ``n_jobs`` (``-1`` = one per core, ``-2`` = all cores but one), else 1.
    Slurm jobs run on their own allocations, and submitit_local gives each job its
    ``cpus_per_task``: neither shares a machine the way joblib does."""
    if not launcher or not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def asked_cores(launcher: Mapping[str, Any] | None) -> int | None:
    """The cores a submitit job asked for (``cpus_per_task``): Slurm confines the job to
    them, but submitit_local starts every job of the sweep at once on this machine, where
    torch would otherwise take every core in each one. None for other launchers."""
    if not launcher or "submitit_launcher" not in str(launcher.get("_target_", "")):
        return None
    cpus = launcher.get("cpus_per_task")
    return int(cpus) if isinstance(cpus, int) and cpus > 0 else None


def wants_one_gpu(trainer: Mapping[str, Any], gpus: int) -> bool:
    """Whether this run trains on exactly one GPU (``trainer.devices=1``) of those here: then
    the sweep picks which. ``auto`` or several devices is a multi-GPU run, refused in a
    one-machine sweep before this (see ``training.preflight``)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    one_device = str(trainer.get("devices")) == "1"
    return gpus > 0 and accelerator in ("auto", "gpu", "cuda") and one_device


@contextlib.contextmanager
def claim_gpu_slot(folder: Path, gpus: int, jobs_per_gpu: int = 1) -> Iterator[int]:
    """Hold a free slot of ``gpus * jobs_per_gpu`` (lock files in ``folder``) while the block
    runs; yield its GPU. Waits while every slot is held. The locks are ``flock``s: a job that
    dies frees its slot with its process."""
    import fcntl  # POSIX only; callers fall back without slots elsewhere

    folder.mkdir(parents=True, exist_ok=True)
    slots = gpus * jobs_per_gpu
    waited = False
    while True:
        for slot in range(slots):
            handle: IO[str] = open(folder / f"slot{slot}.lock", "a")  # noqa: SIM115 (held)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield slot % gpus
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not waited:
            log.info("All %d GPU slots of this sweep are taken: waiting for one", slots)
            waited = True
        time.sleep(WAIT_POLL_S)


@contextlib.contextmanager
def share_machine(
    launcher: Mapping[str, Any] | None,
    trainer: Mapping[str, Any],
    sweep_dir: Path | None,
    jobs_per_gpu: int = 1,
) -> Iterator[JobShare]:
    """This job's share while the block runs (see the module's docstring); a single run,
    or a launcher that does not run jobs side by side, gets ``JobShare()``: nothing changes."""
    cores = machine_cores()
    side_by_side = jobs_side_by_side(launcher, cores)
    gpus = torch.cuda.device_count()
    if side_by_side <= 1 or sweep_dir is None:
        yield JobShare(threads=asked_cores(launcher))
        return
    if not wants_one_gpu(trainer, gpus) or importlib.util.find_spec("fcntl") is None:
        yield JobShare(threads=max(1, cores // side_by_side))
        return
    running = min(side_by_side, gpus * jobs_per_gpu)
    with claim_gpu_slot(Path(sweep_dir) / SLOT_FOLDER, gpus, jobs_per_gpu) as gpu:
        yield JobShare(threads=max(1, cores // running), gpu=gpu)


def apply_share(share: JobShare, num_workers: int) -> int:
    """Set torch's threads to the share and return the data workers it allows (``num_workers``
    capped at the share's threads)."""
    if share.threads is None:
        return num_workers
    torch.set_num_threads(share.threads)
    if num_workers > share.threads:
        log.info(
            "data.num_workers=%d capped at %d: this job's share of the cores",
            num_workers,
            share.threads,
        )
        return share.threads
    return num_workers


@contextlib.contextmanager
def claim_share(cfg: DictConfig) -> Iterator[JobShare]:
    """This run's share of the machine, applied to ``cfg`` while the block runs: torch
    threads, ``data.num_workers`` capped, and ``trainer.devices`` set to the claimed GPU.
    Reads the launcher from Hydra's config (nothing to share outside a Hydra multirun)."""
    launcher, sweep_dir = None, None
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if str(getattr(hydra_cfg.mode, "name", hydra_cfg.mode)) == "MULTIRUN":
            launcher = OmegaConf.to_container(hydra_cfg.launcher, resolve=False)
            sweep_dir = Path(str(hydra_cfg.sweep.dir))
    jobs_per_gpu = int(cfg.get("jobs_per_gpu") or 1)
    with share_machine(launcher, cfg.trainer, sweep_dir, jobs_per_gpu) as share:
        with open_dict(cfg):
            if "num_workers" in cfg.data:
                cfg.data.num_workers = apply_share(share, int(cfg.data.num_workers))
            else:
                apply_share(share, 0)
            if share.gpu is not None:
                cfg.trainer.devices = [share.gpu]
                log.info("This job trains on GPU %d (a slot of this sweep's GPUs)", share.gpu)
        yield share
