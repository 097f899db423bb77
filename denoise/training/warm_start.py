"""Start a training run from another run's weights (``init_from``), not from scratch.

Unlike ``ckpt_path`` (resume: the same network, optimizer and epoch counter), a warm start
takes only the weights and trains a fresh schedule on them, so a finished model can be
fine-tuned with a new recipe, or grown (wider, more input planes, new parts, grey to colour).
How weights fit a grown network is the networks' own knowledge
(:mod:`denoise.models.warm_start`); here is what a run adds: which file ``init_from`` names,
the check before the Trainer starts, and errors that name that file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from denoise.inference.checkpoints import CheckpointError, named_checkpoint, read_checkpoint
from denoise.inference.shipped import FACES
from denoise.models.networks import Design, network_name
from denoise.models.warm_start import WeightsMismatch, load_grown

log = logging.getLogger(__name__)

SHIPPED = "shipped"  # the face model, as it was named when it was the only shipped one


def init_path(init_from: str) -> Path:
    """A shipped model by name (``faces``, ``natural``; ``shipped`` is ``faces``, so recipes
    written before there were several keep their meaning); anything else is a checkpoint
    file."""
    return named_checkpoint(FACES if init_from == SHIPPED else init_from, "init_from")


def check_init_from(init_from: str | None, net: Mapping[str, Any]) -> None:
    """Refuse, before training starts, a file that is no checkpoint or of another network
    class than ``net`` (the run's ``model.net``)."""
    if not init_from:
        return
    path = init_path(init_from)
    saved = network_name(saved_design(read_checkpoint(path)["hyper_parameters"], path).net)
    wanted = network_name(net)
    if saved != wanted:
        raise CheckpointError(
            f"{path}: holds a {saved} model; this run trains a {wanted} (model/net)",
            fix=f"warm-start from a {wanted} checkpoint, or set model/net={saved}",
        )


def warm_start(model: nn.Module, init_from: str) -> Path:
    """Copy the weights ``init_from`` names into ``model``, growing them where ``model`` is
    larger (:func:`~denoise.models.warm_start.load_grown`); weights that do not fit are a
    CheckpointError naming the file."""
    path = init_path(init_from)
    checkpoint = read_checkpoint(path)
    saved = saved_design(checkpoint["hyper_parameters"], path)
    try:
        load_grown(model, checkpoint["state_dict"], saved)
    except WeightsMismatch as error:
        raise CheckpointError(f"{path}: {error}", fix=error.fix) from None
    log.info("Warm start from %s", path)
    return path


def saved_design(hyper_parameters: Mapping[str, Any], path: Path) -> Design:
    """The design a checkpoint's hyperparameters describe; another project's is a
    CheckpointError naming the file."""
    try:
        return Design.from_settings(hyper_parameters)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: not a denoise checkpoint ({error})") from None
