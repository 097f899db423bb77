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
from denoise.models.networks import Design, build_network, network_class
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
    one_of(cfg, "model.loss", tuple(LOSSES))
    check_network(cfg)
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
    check_network_size(cfg)  # model.net.depth for the images; the memory of a training step
    check_network_builds(cfg)


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
    check_arguments(cfg, "trainer", parameters, "Lightning's Trainer")
    if "precision" in parameters:
        check_precision(cfg, _literal_values(parameters["precision"].annotation))
    check_accelerator(cfg)


def check_arguments(
    cfg: DictConfig, section: str, parameters: Mapping[str, inspect.Parameter], owner: str
) -> None:
    """Every key of ``section`` is an argument of the class its ``_target_`` names (whose
    ``parameters`` these are), unless it takes any (``**kwargs``): a typo is one line with
    the nearest name, not a TypeError once the run has started."""
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in setting(cfg, section) or {}:
        if not key.startswith("_") and key not in parameters and not takes_any:
            near = difflib.get_close_matches(key, list(parameters), n=1)
            raise SettingError(
                f"{section}.{key}: not a setting of {owner}",
                fix=f"did you mean {section}.{near[0]}?" if near else None,
            )


def check_network(cfg: DictConfig) -> None:
    """``model.net``: a ``_target_`` naming an ``nn.Module`` class, and settings it takes. The
    class's constructor is the one declaration of its settings and their rules (see
    :func:`check_network_builds`)."""
    net = setting(cfg, "model.net")
    if not isinstance(net, Mapping):
        raise SettingError(
            "model.net: must be a network's config (model/net=unet, attention_unet, "
            "corruption_aware, or one of your own with a _target_)"
        )
    try:
        network = network_class(net.get("_target_", ""))
    except ValueError as error:
        raise SettingError(f"model.net.{error}") from None
    parameters = inspect.signature(network.__init__).parameters
    check_arguments(cfg, "model.net", parameters, net["_target_"])
    whole_number(cfg, "model.net.base_channels", optional=True)
    number_in(cfg, "model.net.dropout", 0.0, 1.0, high_open=True, optional=True)


def check_network_builds(cfg: DictConfig) -> None:
    """What ``model.net``'s class refuses (its constructor's own checks), as one line: the
    network is built on the meta device (shapes only, no memory), once its size is known to
    fit (:func:`check_network_size`)."""
    try:
        with torch.device("meta"):
            build_network(setting(cfg, "model.net"))
    except (ValueError, TypeError) as error:
        raise SettingError(f"model.net: {error}") from None


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
    saved = Design.from_settings(checkpoint["hyper_parameters"]).net
    wanted = Design.from_settings({"net": setting(cfg, "model.net")}).net
    differ = [key for key in {**saved, **wanted} if saved.get(key) != wanted.get(key)]
    if "_target_" in differ:  # another class: its settings are another class's
        differ = ["_target_"]
    if differ:
        was = ", ".join(f"model.net.{key}={saved.get(key)}" for key in differ)
        now = ", ".join(f"model.net.{key}={wanted.get(key)}" for key in differ)
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
