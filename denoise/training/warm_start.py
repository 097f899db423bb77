"""Start a training run from another run's weights (``init_from``), not from scratch.

Unlike ``ckpt_path`` (resume: the same network, optimizer and epoch counter), a warm start
takes only the weights and trains a fresh schedule on them, so a finished model can be
fine-tuned with a new recipe, or grown: a network with extra input planes gets them with
zero weights, and new attention blocks or a refinement stage keep their zero-output start,
so the grown network starts out computing exactly what the old one did.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from denoise.inference.checkpoints import (
    CheckpointError,
    read_checkpoint,
    resolve_checkpoint,
    shipped_weights,
)
from denoise.inference.shipped import FACES, SHIPPED_MODELS
from denoise.models.module import IDENTITY_AT_START
from denoise.runtime.errors import SettingError

log = logging.getLogger(__name__)

SHIPPED = "shipped"  # the face model, as it was named when it was the only shipped one
REQUIRED = "required"  # what a second-stage recipe sets: the first stage's weights are yours


def init_path(init_from: str) -> Path:
    """A shipped model by name (``faces``, ``natural``; ``shipped`` is ``faces``, so recipes
    written before there were several keep their meaning); anything else is a checkpoint
    file."""
    name = FACES if init_from == SHIPPED else init_from
    if name in SHIPPED_MODELS:
        return shipped_weights(name, path_key="init_from", name_key="init_from")
    return resolve_checkpoint(init_from)


def check_init_from(init_from: str | None, architecture: str) -> None:
    """Refuse, before training starts, a file that is no checkpoint or of another design."""
    if not init_from:
        return
    if init_from == REQUIRED:
        raise SettingError(
            "init_from: this recipe is a later stage and needs the weights of the stage before",
            fix="pass init_from=outputs/runs/…/checkpoints/last.ckpt (or an exported .ckpt)",
        )
    path = init_path(init_from)
    saved = read_checkpoint(path)["hyper_parameters"].get("architecture", "unet")
    if saved != architecture:
        raise CheckpointError(
            f"{path}: holds a {saved} model; this run trains model.architecture={architecture}",
            fix=f"warm-start from a {architecture} checkpoint, or set model={saved}",
        )


def warm_start(model: nn.Module, init_from: str) -> Path:
    """Copy the checkpoint's weights into ``model``; input channels it lacks start at zero,
    and so do the parts in :data:`IDENTITY_AT_START` it lacks."""
    path = init_path(init_from)
    source = read_checkpoint(path)["state_dict"]
    target = model.state_dict()
    grown = sorted(name for name in set(target) - set(source) if is_identity_at_start(name))
    missing = sorted(set(target) - set(source) - set(grown))
    if missing:
        raise CheckpointError(f"{path}: lacks weights this model needs ({', '.join(missing[:3])})")
    if grown:
        parts = sorted({grown_part(name) for name in grown})
        log.info("Warm start: new parts start at zero output: %s", ", ".join(parts))
    for name, weights in target.items():
        if name in grown:
            continue
        saved = source[name]
        if saved.shape == weights.shape:
            weights.copy_(saved)
        elif grows_inputs(saved.shape, weights.shape):
            weights.zero_()
            weights[:, : saved.shape[1]].copy_(saved)
            added = weights.shape[1] - saved.shape[1]
            log.info("Warm start: %s gets %d new input channels, at zero", name, added)
        else:
            raise CheckpointError(
                f"{path}: its {name} is {tuple(saved.shape)}; this model's is "
                f"{tuple(weights.shape)}",
                fix="warm-start from a checkpoint of the same size (model.base_channels, depth)",
            )
    log.info("Warm start from %s", path)
    return path


def is_identity_at_start(name: str) -> bool:
    """Whether a weight belongs to a part that computes nothing until it is trained."""
    return grown_part(name) != name


def grown_part(name: str) -> str:
    """The part of :data:`IDENTITY_AT_START` a weight belongs to (``net.refiner`` for
    ``net.refiner.output.weight``), or the name itself where it belongs to none."""
    components = name.split(".")
    for index, component in enumerate(components):
        if component in IDENTITY_AT_START:
            return ".".join(components[: index + 1])
    return name


def grows_inputs(saved: torch.Size, wanted: torch.Size) -> bool:
    """A conv weight with more input channels and otherwise the same shape."""
    return (
        len(saved) == len(wanted) == 4
        and saved[0] == wanted[0]
        and saved[2:] == wanted[2:]
        and saved[1] < wanted[1]
    )
