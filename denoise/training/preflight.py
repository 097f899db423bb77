"""What a training run checks before the Trainer starts: its settings and the checkpoint it
resumes from. (The data is loaded and checked by the DataModule before the Trainer starts too:
see ``train.py``.) Each problem is a one-line :class:`~denoise.runtime.errors.UserError`."""

from __future__ import annotations

import difflib
import inspect
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.accelerators import AcceleratorRegistry
from omegaconf import DictConfig

from denoise.data.settings import check_data_settings
from denoise.files.outputs import is_sweep_job
from denoise.inference.checkpoints import CheckpointError, read_checkpoint, resolve_checkpoint
from denoise.models.losses import LOSSES
from denoise.models.module import DenoisingModule
from denoise.models.networks import ARCHITECTURES
from denoise.runtime.distributed import (
    SPAWNING_STRATEGY_PREFIXES,
    externally_launched,
    processes_per_node,
)
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import (
    batch_limit,
    number_in,
    one_of,
    positive_number,
    setting,
    whole_number,
)
from denoise.training.memory import check_network_size
from denoise.training.tracking import check_loggers

# The hyperparameters that shape the network: a checkpoint resumes only into the same ones.
NETWORK_KEYS = (
    "architecture",
    "in_channels",
    "out_channels",
    "base_channels",
    "depth",
    "global_context",
    "attention_levels",
    "refine_channels",
    "attention_gates",
    "cross_channel",
    "colour_sigma",
    "luminance_sigma",
)
# What checkpoints from before a key existed were trained with.
NETWORK_DEFAULTS = {
    "global_context": False,
    "attention_levels": 0,
    "refine_channels": 0,
    "attention_gates": False,
    "cross_channel": False,
    "colour_sigma": 0.0,
    "luminance_sigma": 0.0,
}
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit; Lightning refuses larger ones mid-start
# What torch must find for each accelerator Lightning knows by name.
ACCELERATOR_HARDWARE = {
    "gpu": "GPU (CUDA, or Apple's MPS)",
    "cuda": "CUDA GPU",
    "mps": "Apple GPU (MPS)",
    "tpu": "TPU (torch_xla)",
}


def check_training_settings(cfg: DictConfig) -> None:
    """Every value that would fail, or silently train nothing, once the run has started."""
    check_data_settings(cfg)
    check_seed(cfg)
    whole_number(cfg, "jobs_per_gpu", minimum=1, optional=True)
    one_of(cfg, "model.architecture", ARCHITECTURES)
    one_of(cfg, "model.loss", tuple(LOSSES))
    whole_number(cfg, "model.base_channels")
    whole_number(cfg, "model.depth", minimum=2)
    number_in(cfg, "model.dropout", 0.0, 1.0, high_open=True)
    if (
        setting(cfg, "model.global_context")
        and setting(cfg, "model.architecture") != "corruption_aware"
    ):
        raise SettingError(
            "model.global_context=true: only the corruption_aware architecture has it"
        )
    levels = whole_number(cfg, "model.attention_levels", minimum=0, optional=True)
    if levels is not None and levels > setting(cfg, "model.depth"):
        raise SettingError(
            f"model.attention_levels={levels}: more than the {setting(cfg, 'model.depth')} "
            "levels of the U-Net (model.depth)"
        )
    refine = whole_number(cfg, "model.refine_channels", minimum=0, optional=True)
    if refine and setting(cfg, "model.architecture") != "corruption_aware":
        raise SettingError(
            "model.refine_channels: only the corruption_aware architecture has a refinement stage"
        )
    if setting(cfg, "model.cross_channel") and (
        setting(cfg, "model.architecture") != "corruption_aware" or refine
    ):
        raise SettingError(
            "model.cross_channel=true: a setting of the corruption_aware architecture without "
            "a refinement stage (model.refine_channels=0)"
        )
    for stage in ("colour_sigma", "luminance_sigma"):
        sigma = number_in(cfg, f"model.{stage}", 0.0, 16.0, optional=True)
        if sigma and not setting(cfg, "model.cross_channel"):
            raise SettingError(
                f"model.{stage}={sigma}: a stage of the cross-channel colour model "
                "(model.cross_channel=true)"
            )
    if setting(cfg, "model.attention_gates") and setting(cfg, "model.architecture") != "unet":
        raise SettingError(
            "model.attention_gates=true: the gates are a setting of the unet architecture "
            "(the Attention U-Net)"
        )
    if setting(cfg, "optimizer.lr") is not None:
        positive_number(cfg, "optimizer.lr")
    check_trainer(cfg)
    epochs = setting(cfg, "trainer.max_epochs")
    if epochs is not None and epochs != -1:
        whole_number(cfg, "trainer.max_epochs")  # 0 would "complete" an untrained model
    check_max_time(cfg)
    batch_limit(cfg, "trainer.limit_train_batches", "train nothing")
    batch_limit(cfg, "trainer.limit_val_batches", "never validate (the best checkpoint needs it)")
    if cfg.get("test", True):
        batch_limit(cfg, "trainer.limit_test_batches", "test nothing")
    if setting(cfg, "optimized_metric") is not None:  # what the run returns to a sweeper
        stages = ("val", "test") if cfg.get("test", True) else ("val",)
        figures = [name for stage in stages for name in DenoisingModule.logged_figures(stage)]
        one_of(cfg, "optimized_metric", figures)
    check_loggers(cfg)  # e.g. logger=mlflow without mlflow installed
    check_distributed(cfg)
    check_network_size(cfg)  # model.depth for the images; the memory of a training step


def check_seed(cfg: DictConfig) -> None:
    """A seed numpy takes (``seed_everything`` would refuse it once the run has started)."""
    seed = whole_number(cfg, "seed", minimum=0, optional=True)
    if seed is not None and seed > MAX_SEED:
        raise SettingError(f"seed={seed}: must be at most {MAX_SEED} (numpy's seeds are 32-bit)")


def check_trainer(cfg: DictConfig) -> None:
    """The Trainer's arguments, its precision and its accelerator: Lightning refuses a wrong
    one only as Hydra instantiates the Trainer, in a multi-line report, after the run has
    started (its folder made, its data loaded)."""
    target = setting(cfg, "trainer._target_")
    if not target:
        return
    parameters = inspect.signature(get_class(target).__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in setting(cfg, "trainer") or {}:
        if not key.startswith("_") and key not in parameters and not takes_any:
            near = difflib.get_close_matches(key, list(parameters), n=1)
            raise SettingError(
                f"trainer.{key}: not a setting of Lightning's Trainer",
                fix=f"did you mean trainer.{near[0]}?" if near else None,
            )
    if "precision" in parameters:
        check_precision(cfg, _literal_values(parameters["precision"].annotation))
    check_accelerator(cfg)


def check_precision(cfg: DictConfig, accepted: list[Any]) -> None:
    """One of the precisions the Trainer's signature names (``32-true``, ``bf16-mixed``, …,
    and the short ``16``, ``32``, ``64``, ``bf16``); null is Lightning's default."""
    value = setting(cfg, "trainer.precision")
    if value is None or not accepted or (value in accepted and not isinstance(value, bool)):
        return
    named = [str(choice) for choice in accepted if "-" in str(choice)]
    short = [str(choice) for choice in accepted if "-" not in str(choice)]
    also = f" (or {', '.join(dict.fromkeys(short))})" if short else ""
    raise SettingError(f"trainer.precision={value}: must be one of {', '.join(named)}{also}")


def check_accelerator(cfg: DictConfig) -> None:
    """An accelerator Lightning knows, and whose hardware torch finds on this machine."""
    value = setting(cfg, "trainer.accelerator")
    if value is None or value == "auto" or not isinstance(value, str):  # auto, or an object
        return
    known = {
        name: AcceleratorRegistry[name]["accelerator"]
        for name in AcceleratorRegistry.available_accelerators()
    }
    if value == "gpu":
        available = any(known[name].is_available() for name in ("cuda", "mps") if name in known)
    elif value in known:
        available = known[value].is_available()
    else:
        names = ", ".join(["auto", "gpu", *sorted(known)])
        raise SettingError(f"trainer.accelerator={value}: must be one of {names}")
    if not available:
        hardware = ACCELERATOR_HARDWARE.get(value, value)
        raise SettingError(
            f"trainer.accelerator={value}: torch finds no {hardware} on this machine",
            fix="train on the CPU with trainer.accelerator=cpu (or auto: a GPU where there is one)",
        )


def _literal_values(annotation: Any) -> list[Any]:
    """The values of the ``Literal`` types in an annotation (through ``Optional``, ``Union``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [value for arg in typing.get_args(annotation) for value in _literal_values(arg)]


def check_max_time(cfg: DictConfig) -> None:
    """``+trainer.max_time`` (a time box: Lightning stops, tests and saves at the end of the
    step that passes it) in Lightning's strict ``DD:HH:MM:SS``, checked here: Lightning's own
    error arrives through Hydra's instantiation as a multi-line report."""
    limit = setting(cfg, "trainer.max_time")
    if limit is not None and not re.fullmatch(r"\d{2}:\d{2}:\d{2}:\d{2}", str(limit)):
        raise SettingError(
            f"trainer.max_time={limit}: must be days:hours:minutes:seconds, two digits each "
            "(00:01:30:00 for an hour and a half)"
        )


def world_size(cfg: DictConfig) -> int:
    """How many processes the run's Trainer will have: devices per machine times machines."""
    devices = processes_per_node(
        setting(cfg, "trainer.devices"), setting(cfg, "trainer.accelerator")
    )
    nodes = setting(cfg, "trainer.num_nodes")
    return devices * (nodes if isinstance(nodes, int) and not isinstance(nodes, bool) else 1)


def check_distributed(cfg: DictConfig) -> None:
    """Several processes per machine in a ``-m`` sweep need processes started by Slurm or by
    multiprocessing: Lightning's ``ddp`` starts each extra process by running the command
    line again (``_SubprocessScriptLauncher``), and in multirun mode that command is the
    whole sweep, which then runs again in every extra process, into a sweep folder of its
    own."""
    if not is_sweep_job():
        return
    strategy = setting(cfg, "trainer.strategy")
    if isinstance(strategy, Mapping):  # a strategy object: spawns if its start_method says so
        spawns = strategy.get("start_method") in ("spawn", "fork", "forkserver")
    else:
        spawns = str(strategy or "auto").startswith(SPAWNING_STRATEGY_PREFIXES)
    devices = processes_per_node(
        setting(cfg, "trainer.devices"), setting(cfg, "trainer.accelerator")
    )
    if devices > 1 and not spawns and not externally_launched():
        shown = strategy.get("_target_") if isinstance(strategy, Mapping) else strategy
        raise SettingError(
            f"trainer.strategy={shown} with trainer.devices={setting(cfg, 'trainer.devices')} "
            "cannot run in a -m sweep on one machine: Lightning starts each extra process by "
            "running the command again, which would run the whole sweep again; sweep with a "
            "Slurm launcher (hydra/launcher=slurm, one task per device) or use "
            "trainer.strategy=ddp_spawn"
        )


def check_shards(sizes: Mapping[str, int], processes: int) -> None:
    """Every process validates and tests a share of each split; one without a single image
    would skip the epoch's end that the others wait for (the metrics' sync): refused."""
    for split, size in sizes.items():
        if processes > 1 and size < processes:
            raise SettingError(
                f"the {split} split has {size} image{'s' if size != 1 else ''}, fewer than the "
                f"{processes} processes of this run (trainer.devices x trainer.num_nodes): each "
                f"process needs at least one; use fewer processes or a larger {split} split"
            )


def check_resume(cfg: DictConfig) -> None:
    """A checkpoint to resume from must be a training checkpoint of this very network."""
    if not cfg.get("ckpt_path"):
        return
    path = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = read_checkpoint(path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(
            f"{path}: holds weights only (an exported model?), not a training state to resume",
            fix="resume from a run's checkpoints/last.ckpt",
        )
    saved = checkpoint["hyper_parameters"]
    differ = [
        key
        for key in NETWORK_KEYS
        if saved.get(key, NETWORK_DEFAULTS.get(key))
        != _or_default(setting(cfg, f"model.{key}"), key)
    ]
    if differ:
        was = ", ".join(f"model.{key}={saved.get(key)}" for key in differ)
        now = ", ".join(f"model.{key}={setting(cfg, f'model.{key}')}" for key in differ)
        raise CheckpointError(
            f"{path}: trained with {was}; this run has {now}",
            fix="resume with the checkpoint's settings (e.g. model=corruption_aware)",
        )
    check_resumed_weights(path, checkpoint["state_dict"], cfg)
    check_epochs_left(path, checkpoint, cfg)
    check_best_kept(path, checkpoint)


def check_resumed_weights(path: Path, saved: Mapping[str, Any], cfg: DictConfig) -> None:
    """Every weight of the checkpoint fits the model this run builds (Lightning loads them
    strictly, and says otherwise in a long report once the run has started). The model is
    built on the meta device: shapes only, no memory, no initialisation."""
    with torch.device("meta"):
        model = instantiate(cfg.model)
    wanted = {name: tensor.shape for name, tensor in model.state_dict().items()}
    for name, shape in wanted.items():
        if name not in saved:
            raise CheckpointError(f"{path}: lacks {name}, a weight of this run's model")
        if tuple(saved[name].shape) != tuple(shape):
            raise CheckpointError(
                f"{path}: its {name} is {tuple(saved[name].shape)}; this run's model's is "
                f"{tuple(shape)}",
                fix="resume from a checkpoint that this run's settings wrote (its last.ckpt)",
            )
    extra = sorted(set(saved) - set(wanted))
    if extra:
        raise CheckpointError(f"{path}: holds {extra[0]}, which this run's model has no place for")


def epochs_trained(checkpoint: Mapping[str, Any]) -> int:
    """How many epochs a training checkpoint has behind it: its fit loop's processed epochs
    (the epoch it was written in counts once it ended), else its epoch number."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(checkpoint.get("epoch", 0))


def check_epochs_left(path: Path, checkpoint: Mapping[str, Any], cfg: DictConfig) -> None:
    """A run that already reached ``trainer.max_epochs`` has nothing left to train: Lightning
    would restore it, train nothing and exit as if it had."""
    limit = setting(cfg, "trainer.max_epochs")
    done = epochs_trained(checkpoint)
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit <= done:
        raise CheckpointError(
            f"{path}: this run already finished its {done} epochs (trainer.max_epochs={limit}); "
            "raise trainer.max_epochs to train on"
        )


def check_best_kept(path: Path, checkpoint: Mapping[str, Any]) -> None:
    """The run's best checkpoint must still be there: the resumed run carries it on (see
    ``RunCheckpoint``), and its test and ``best_epoch`` stand on it."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not (str(key).startswith("ModelCheckpoint") and isinstance(state, Mapping)):
            continue
        best = state.get("best_model_path")
        if state.get("monitor") and best and not Path(best).is_file():
            raise CheckpointError(
                f"{path}: the best checkpoint of its run, {best}, is gone; a resumed run "
                "could not keep its best",
                fix=f"put it back, or train on from these weights with a fresh schedule: "
                f"init_from={path}",
            )


def _or_default(value: object, key: str) -> object:
    return NETWORK_DEFAULTS.get(key) if value is None else value
