"""OmegaConf resolvers that ``conf/`` interpolates: defaults that depend on the device, and
the config groups a command's ``--help`` lists."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from importlib.resources import files

from omegaconf import OmegaConf

from denoise import CONFIG_MODULE
from denoise.runtime.search import trials_left


def register_resolvers() -> None:
    """``${device:precision}`` is bf16 mixed precision on a GPU and on a CPU with bf16
    hardware, float32 elsewhere (``machine.default_precision``); ``${device:pin_memory}`` pins
    host memory only for a GPU.
    ``${config_groups:${hydra.runtime.choices}}`` is the help text of a command's groups;
    ``${optuna_trials_left:DB,STUDY,TOTAL}`` the trials a resumed search still runs;
    ``${folder_name:TEXT}`` TEXT as one folder name (no path separators) of a length every
    file system takes."""
    resolvers = {
        "device": device_default,
        "config_groups": config_groups_help,
        "optuna_trials_left": trials_left,
        "folder_name": folder_name,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def device_default(key: str) -> str | bool:
    import torch  # only once a run resolves its config: --help leaves these unresolved

    from denoise.runtime.machine import default_precision

    cuda = torch.cuda.is_available()
    defaults = {"precision": default_precision()[0], "pin_memory": cuda}
    if key not in defaults:
        raise KeyError(f"unknown device default {key!r}; one of {sorted(defaults)}")
    return defaults[key]


MAX_FOLDER_NAME = 160  # file systems refuse names over 255 bytes; leave room for the job number
# Characters no folder name may hold (a path separator: "../x" would climb out of the sweep
# folder; NUL and control characters), written as %XX, the URL way.
UNSAFE_IN_NAMES = re.compile(r"[/\\\x00-\x1f\x7f%]")


def folder_name(text: str) -> str:
    """``text`` as one folder name: whatever a value holds (``optimized_metric=val/psnr``,
    ``init_from=../runs/x.ckpt``), the folder lands directly inside the sweep folder. Path
    separators, control characters (and ``%``, so that a name reads back unambiguously) are
    written as ``%XX``, and so is a name of dots alone; a long name keeps its start and a hash
    of the whole, so that long override lists (Optuna's long floats) still name distinct
    folders."""
    name = UNSAFE_IN_NAMES.sub(lambda match: f"%{ord(match.group()):02X}", str(text))
    if name and not name.strip("."):  # "." and "..": this folder and its parent
        name = name.replace(".", "%2E")
    if len(name.encode()) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    start = name.encode()[: MAX_FOLDER_NAME - 12].decode(errors="ignore")
    return f"{start}-{digest}"


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files of its folder in ``conf/``."""
    folder = files(CONFIG_MODULE).joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(
        entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def config_groups_help(choices: Mapping[str, str | None]) -> str:
    """A section for ``--help``: each group that this command composed (Hydra's
    ``hydra.runtime.choices``), its current option and the others, so that ``evaluate --help``
    does not offer the training groups. Hydra's own groups (``hydra/...``) are left out."""
    rows = [
        (group, choice or "null", ", ".join(group_options(group)))
        for group, choice in sorted(choices.items())
        if group != "hydra" and not group.startswith("hydra/")
    ]
    if not rows:
        return ""
    width = max(len(f"{group}={choice}") for group, choice, _ in rows)
    lines = ["== Config groups (group=option; the current one, then all) =="]
    lines += [f"{f'{group}={choice}':<{width}}   {options}" for group, choice, options in rows]
    return "\n".join(lines) + "\n\n"
