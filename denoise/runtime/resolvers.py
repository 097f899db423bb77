"""OmegaConf resolvers that let ``conf/`` pick device-dependent defaults."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def register_resolvers() -> None:
    """``${device:precision}`` is bf16 mixed precision on a GPU and float32 on the CPU (where
    bf16 convolutions are slower); ``${device:pin_memory}`` pins host memory only for a GPU."""
    if OmegaConf.has_resolver("device"):
        return
    OmegaConf.register_new_resolver("device", device_default)


def device_default(key: str) -> str | bool:
    cuda = torch.cuda.is_available()
    defaults = {"precision": "bf16-mixed" if cuda else "32-true", "pin_memory": cuda}
    if key not in defaults:
        raise KeyError(f"unknown device default {key!r}; one of {sorted(defaults)}")
    return defaults[key]
