"""What a denoiser is built from: a network named by a ``_target_`` config (any ``nn.Module``;
``conf/model/net/*.yaml``, whose constructor's signature declares its settings) and the
settings the module trains and runs it with. Training, checkpoint loading and warm starts
share :class:`Design`; nothing here imports Lightning or Hydra, so inference does not."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

# The project's own networks, by the name checkpoints written before ``model/net`` gave them
# (``architecture``); the Attention U-Net is the unet with ``attention_gates``.
NETWORKS = {
    "unet": "denoise.models.unet.DenoisingUNet",
    "corruption_aware": "denoise.models.corruption_aware.CorruptionAwareUNet",
}
# Parts a network may gain over the checkpoint it warm-starts from: each starts out computing
# nothing (a zero output projection), so the grown network computes what the old one did.
IDENTITY_AT_START = ("attention", "refiner")
# What a checkpoint written before ``model/net`` held for a network setting it left out.
FLAT_DEFAULTS = {
    "in_channels": 1,
    "out_channels": 1,
    "base_channels": 32,
    "depth": 5,
    "dropout": 0.2,
    "negative_slope": 0.1,
    "packed_dropout": True,
}


def _default_net() -> dict[str, Any]:
    return {"_target_": NETWORKS["unet"]}


@dataclass(frozen=True)
class Design:
    """Every setting a checkpoint saves: the network's ``_target_`` config (``net``), and how
    the module runs and trains it. ``optimizer``, ``scheduler`` and ``loss`` only matter to
    training; they are kept so that a design saved again is the design read. Build one from
    saved or configured settings with :meth:`from_settings`, which also reads old checkpoints."""

    net: Mapping[str, Any] = field(default_factory=_default_net)
    channels_last: bool = True
    loss: str = "mse"
    optimizer: Mapping[str, Any] | None = None
    scheduler: Mapping[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Design:
        """The design of a module's settings or a checkpoint's hyperparameters. Checkpoints
        written before ``model/net`` hold the network's settings flat beside the module's,
        the class named by ``architecture``: this is the one place that reads them into a
        ``net`` config (a setting its class does not take is dropped where it is off, which
        is what such checkpoints wrote for it). Unknown settings are a TypeError."""
        settings = dict(settings)
        own = {key: settings.pop(key) for key in MODULE_SETTINGS if key in settings}
        if "net" in own or not settings:
            dropout = settings.pop(DROPOUT_SHORTCUT, None)
            if settings:
                raise TypeError(f"unknown settings beside net: {', '.join(settings)}")
            given = dict(own.pop("net", None) or _default_net())
            target = given.pop("_target_", "")
            defaults = network_settings(target)
            if dropout is not None:
                if "dropout" not in defaults:
                    raise TypeError(f"model.dropout: {target} takes no dropout")
                given["dropout"] = dropout
            filled = {  # as saved and read back (a checkpoint, JSON): lists, not tuples
                key: list(value) if isinstance(value, tuple) else value
                for key, value in defaults.items()
                if value is not EMPTY
            }
            return cls(net={"_target_": target, **filled, **given}, **own)
        architecture = settings.pop("architecture", "unet")
        if architecture not in NETWORKS:
            raise ValueError(
                f"unknown architecture {architecture!r}; choose one of {', '.join(NETWORKS)}"
            )
        takes = network_settings(NETWORKS[architecture])
        net: dict[str, Any] = {"_target_": NETWORKS[architecture]}
        for key, value in {**FLAT_DEFAULTS, **settings}.items():
            if key in takes:
                net[key] = value
            elif value:
                raise ValueError(f"{key} is not a setting of the {architecture} architecture")
        return cls.from_settings({**own, "net": net})

    def network(self) -> nn.Module:
        """The untrained network of this design (:func:`build_network`)."""
        return build_network(self.net)


MODULE_SETTINGS = ("net", "channels_last", "loss", "optimizer", "scheduler")
# model.dropout, the reference notebook's name for it, sets model.net.dropout when not null.
DROPOUT_SHORTCUT = "dropout"
EMPTY = inspect.Parameter.empty  # a network setting without a default


def network_class(target: str) -> type[nn.Module]:
    """The ``nn.Module`` class a ``_target_`` names. Anything else is refused: a checkpoint's
    settings build a network, they do not call arbitrary functions."""
    module_name, _, name = str(target).rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as error:
        raise ValueError(f"_target_={target}: no such class ({error})") from None
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        raise ValueError(f"_target_={target}: not an nn.Module class")
    return found


def network_settings(target: str) -> dict[str, Any]:
    """The settings a network class takes, each with its default (:data:`EMPTY` where it
    has none): its constructor's signature is their one declaration."""
    parameters = inspect.signature(network_class(target).__init__).parameters
    return {
        name: parameter.default
        for name, parameter in list(parameters.items())[1:]
        if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def build_network(net: Mapping[str, Any]) -> nn.Module:
    """The network a ``_target_`` config describes (its class's own checks raise ValueError,
    a setting it does not take TypeError)."""
    settings = {key: value for key, value in net.items() if not key.startswith("_")}
    return network_class(net.get("_target_", ""))(**settings)


def network_name(net: Mapping[str, Any]) -> str:
    """``unet`` or ``corruption_aware`` for the project's networks; else the class's path."""
    target = str(net.get("_target_", ""))
    return next((name for name, path in NETWORKS.items() if path == target), target)
