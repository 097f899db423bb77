"""Which process of a distributed run this is, and what the other processes may write.

In a ``trainer=ddp`` run, every process runs the whole command: on one machine Lightning's
launcher starts the other processes by running the same command line again (with
``LOCAL_RANK`` set and the first process's run folder: see Lightning's
``_hydra_subprocess_cmd``), and Slurm, ``torchrun`` and other nodes start theirs themselves.
Only rank zero writes the run's files (``summary.json``, checkpoints, logs); the others leave
them alone. Before the Trainer exists the rank comes from the launcher's environment; once
it is set up, from Lightning (``rank_zero_only.rank``, ``trainer.is_global_zero``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

# Lightning's own rank_zero_only (lightning.pytorch.utilities re-exports it), without
# importing all of Lightning: its ``rank`` is the global rank once a strategy set it up.
from lightning_utilities.core.rank_zero import rank_zero_only

# Strategies whose extra processes Lightning starts with multiprocessing; the others (ddp,
# fsdp, deepspeed, and auto on several devices) run the command line again for each.
SPAWNING_STRATEGY_PREFIXES = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def _nonzero(environ: Mapping[str, str], key: str) -> bool:
    value = environ.get(key, "").strip()
    try:
        return int(value) != 0
    except ValueError:
        return False  # unset or empty


def is_rank_zero_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is (or will be) global rank zero: read from Lightning once its
    strategy has set the rank, and before that from the variables the launchers set, as
    Lightning reads them (``RANK`` first: torchrun; ``LOCAL_RANK`` and ``NODE_RANK``:
    Lightning's own launcher and hand-started nodes; ``SLURM_PROCID``; LSF's
    ``JSM_NAMESPACE_RANK``)."""
    if getattr(rank_zero_only, "rank", 0) != 0:
        return False
    environ = os.environ if environ is None else environ
    if "RANK" in environ:
        return not _nonzero(environ, "RANK")
    node = _nonzero(environ, "NODE_RANK") or _nonzero(environ, "GROUP_RANK")
    if "LOCAL_RANK" in environ:
        return not (node or _nonzero(environ, "LOCAL_RANK"))
    for key in ("SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in environ:
            return not _nonzero(environ, key)
    return not node


def rank_overrides(arguments: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Hydra overrides that keep a non-zero rank's Hydra from writing into the run folder:
    no ``.hydra/`` copy of the config and no log file (its log lines go to the console).
    Lightning's launcher already passes ``hydra.output_subdir=null`` to the processes it
    starts, but names a log file ``train_ddp_process_<rank>.log``; other launchers pass
    nothing."""
    if is_rank_zero_process(environ):
        return []
    overrides = []
    if not any(argument.startswith("hydra.output_subdir=") for argument in arguments):
        overrides.append("hydra.output_subdir=null")
    if not any("hydra/job_logging" in argument for argument in arguments):
        overrides.append("hydra/job_logging=stdout")
    return overrides


def externally_launched() -> bool:
    """Whether a cluster launcher (Slurm, torchrun, LSF) starts every process itself, so
    that Lightning runs no command line again (Lightning's own detection; Kubeflow's
    environment is never detected, only chosen)."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    return any(
        environment.detect()
        for environment in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment)
    )


def processes_per_node(devices: object, accelerator: object) -> int:
    """How many processes a Trainer with ``devices`` starts on each machine: a count, a
    list or comma-separated string of device ids, or ``auto``/``-1`` (every GPU; one CPU
    process)."""
    if isinstance(devices, bool):
        return 1
    if isinstance(devices, int):
        return devices if devices > 0 else _visible_devices(accelerator)
    if isinstance(devices, (list, tuple)):
        return max(len(devices), 1)
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return _visible_devices(accelerator)
        if "," in text:
            return max(len([part for part in text.split(",") if part.strip()]), 1)
        try:
            return max(int(text), 1)
        except ValueError:
            return 1
    return 1


def _visible_devices(accelerator: object) -> int:
    import torch

    if accelerator in ("auto", "gpu", "cuda", None) and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def quiet_other_ranks() -> None:
    """A non-zero rank logs warnings and errors only, to the console: rank zero's log file
    is rank zero's (Hydra opened it in this process only when a launcher other than
    Lightning's started it with the run folder's own job name)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)
