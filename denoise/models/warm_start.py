"""How trained weights fit a network that has grown since, by the networks' own module names.

A warm start (``init_from``, :mod:`denoise.training.warm_start`) copies a checkpoint's weights
into a fresh model, which may have grown: a network with extra input planes gets them with
zero weights; a wider one (``model.net.base_channels`` above the checkpoint's) keeps the old
channels and adds new ones that no old channel reads from yet; new attention blocks or a
refinement stage keep their zero-output start. So the grown network starts out computing
exactly what the old one did, and training decides what the new parts add.

A colour corruption-aware model can start from a grey one: a ``cross_channel`` one restores
each channel exactly as the grey model does (the other channels' planes come in with zero
weights); one that restores the channels together (:func:`spread_over_channels`) restores
every channel as the grey model restores the channels' mean. Training then teaches either
what one channel says about another.

Nothing here reads a file: the caller names the checkpoint in the errors it passes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn

from denoise.models.denoiser import Denoiser
from denoise.models.networks import IDENTITY_AT_START, Design, network_name
from denoise.models.unet import UpConvModule
from denoise.runtime.errors import UserError

log = logging.getLogger(__name__)

# The planes the corruption-aware networks read and write, one per image channel each, in the
# order CorruptionAwareUNet concatenates and splits them.
BACKBONE_IN, BACKBONE_OUT = "net.backbone.encoder.0.0.weight", "net.backbone.output"
REFINER_IN, REFINER_OUT = "net.refiner.encoder.0.0.weight", "net.refiner.output"


class WeightsMismatch(UserError):
    """Saved weights that do not fit the model (the caller prefixes the checkpoint's path)."""


def load_grown(model: nn.Module, source: Mapping[str, torch.Tensor], saved: Design) -> None:
    """Copy ``source`` (the state dict of a model of design ``saved``) into ``model``; where
    ``model`` has more channels, the old ones are copied and the new ones feed no old channel
    (:func:`grow_into`); the parts in :data:`IDENTITY_AT_START` it lacks start at zero output."""
    target = model.state_dict()
    net = getattr(model, "hparams", {}).get("net", {})
    channels = int(net.get("in_channels", 1))
    # a cross-channel model restores one channel at a time: the grey weights fit as they are,
    # the other channels' planes growing in with zero weights
    if saved.net.get("in_channels", 1) == 1 and channels > 1 and not net.get("cross_channel"):
        source, saved = spread_over_channels(source, saved, channels)
        log.info("Warm start: the grey model's planes spread over %d channels", channels)
    design = design_shapes(saved)
    layouts = channel_layouts(model)
    grown = sorted(name for name in set(target) - set(source) if is_identity_at_start(name))
    missing = sorted(set(target) - set(source) - set(grown))
    if missing:
        raise WeightsMismatch(f"lacks weights this model needs ({', '.join(missing[:3])})")
    if grown:
        parts = sorted({grown_part(name) for name in grown})
        log.info("Warm start: new parts start at zero output: %s", ", ".join(parts))
    widened: list[str] = []
    for name, weights in target.items():
        if name in grown:
            continue
        old = source[name]
        if old.shape == weights.shape:
            weights.copy_(old)
        elif widens_attention(name, old, weights):
            raise WeightsMismatch(
                f"its attention ({name}) cannot be widened without changing what the model "
                "computes",
                fix="warm-start a model of the checkpoint's model.net.base_channels",
            )
        elif can_grow(old.shape, weights.shape) and old.shape == design.get(name):
            grow_into(weights, old, *layouts.get(name.rsplit(".", 1)[0], (0, False)))
            widened.append(name)
        else:
            raise WeightsMismatch(
                f"its {name} is {tuple(old.shape)}; this model's is {tuple(weights.shape)}",
                fix="warm-start from a checkpoint of the same design and depth, at most as "
                "wide (model.net.global_context, data.channels, model.net.depth, "
                "model.net.base_channels; "
                "the experiment it was trained with sets them)",
            )
    if widened:
        log.info(
            "Warm start: %d tensors grow (%s, …): the new channels feed no old one",
            len(widened),
            widened[0],
        )


def spread_over_channels(
    source: Mapping[str, torch.Tensor], saved: Design, channels: int
) -> tuple[dict[str, torch.Tensor], Design]:
    """A grey corruption-aware model's weights and design for ``channels`` channels: each
    first conv reads every kind of plane (noisy, candidates, guess, …) as its mean over the
    channels, and each output plane (correction, keep) goes to every channel."""
    if network_name(saved.net) != "corruption_aware" or BACKBONE_IN not in source:
        raise WeightsMismatch(
            "a grey model warm-starts a colour one only for the corruption_aware design",
            fix="warm-start from a checkpoint of the same data.channels",
        )
    state = dict(source)
    for name in (BACKBONE_IN, REFINER_IN):
        if name in state:  # input planes kind by kind: [kind 0 of each channel, kind 1 …]
            state[name] = state[name].repeat_interleave(channels, dim=1) / channels
    for prefix in (BACKBONE_OUT, REFINER_OUT):
        for name in (f"{prefix}.weight", f"{prefix}.bias"):
            if name in state:
                state[name] = state[name].repeat_interleave(channels, dim=0)
    grown = {**saved.net, "in_channels": channels, "out_channels": channels}
    return state, replace(saved, net=grown)


def design_shapes(design: Design) -> dict[str, torch.Size]:
    """The shape of every weight of the model ``design`` describes (built on the meta device:
    no memory, no initialisation). Only a tensor of that shape is a layer of a narrower model
    of the same design, which growing keeps computing what it did; one of any other shape (a
    crafted or damaged checkpoint) fits no growing rule, even where it is smaller than this
    model's in every dimension."""
    try:
        with torch.device("meta"):
            model = Denoiser(design)
    except (TypeError, ValueError, KeyError) as error:
        first = (str(error).strip() or type(error).__name__).splitlines()[0][:200]
        raise WeightsMismatch(
            f"not a denoise checkpoint (its hyperparameters build no denoise model: {first})"
        ) from None
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


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


def can_grow(saved: torch.Size, wanted: torch.Size) -> bool:
    """The same number of dimensions, none smaller, and the kernel unchanged."""
    return (
        len(saved) == len(wanted)
        and all(old <= new for old, new in zip(saved, wanted, strict=True))
        and saved[2:] == wanted[2:]
    )


def widens_attention(name: str, saved: torch.Tensor, wanted: torch.Tensor) -> bool:
    """Attention's dot products would read the new channels at once: it cannot be widened
    without changing what the model computes."""
    return "attention" in name.split(".") and saved.shape != wanted.shape


def channel_layouts(model: nn.Module) -> dict[str, tuple[int, bool]]:
    """For each conv of ``model``: which dimension of its weight holds the output channels
    (1 for a transposed conv), and whether its input is the decoder's concatenation of the
    upsampled features and the skip (two halves, each of which widens)."""
    layouts: dict[str, tuple[int, bool]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.ConvTranspose2d):
            layouts[name] = (1, False)
        elif isinstance(module, nn.Conv2d):
            layouts.setdefault(name, (0, False))
        if isinstance(module, UpConvModule):
            layouts[f"{name}.conv.0"] = (0, True)
    return layouts


def grow_into(
    weights: torch.Tensor, saved: torch.Tensor, out_dim: int = 0, halves: bool = False
) -> None:
    """Put ``saved`` into the larger ``weights`` so that the old channels compute what they
    did: old values in the leading channels (in each half of a concatenated input), and
    zero weight from every new input channel to every old output channel. New output
    channels keep ``weights``' fresh initialisation; their readers give them zero weight."""
    if weights.ndim < 2:  # biases, BatchNorm: one value per output channel
        weights[: saved.shape[0]].copy_(saved)
        return
    in_dim = 1 - out_dim
    old_out, old_in = saved.shape[out_dim], saved.shape[in_dim]
    inputs = torch.arange(old_in)
    if halves:  # [upsampled, skip]: each half keeps its old channels first
        old_half, new_half = old_in // 2, weights.shape[in_dim] // 2
        inputs = torch.cat([torch.arange(old_half), new_half + torch.arange(old_half)])
    rows = weights.narrow(out_dim, 0, old_out)
    rows.zero_()
    rows.index_copy_(in_dim, inputs, saved)
