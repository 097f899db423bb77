"""A recipe's stages: one file per shipped model (``conf/experiment/<model>.yaml``) holds the
settings every stage shares and, under ``stages:``, what each stage changes, top to bottom.
``stage=<name>`` (the first by default) runs that stage: its changes and those of the stages
above it are merged into the composed config before anything is checked, as if the recipe
file held them. What was composed after the recipe still wins: a setting given on the command
line, and the config groups the primary config lists after ``experiment`` (``debug=quick``
keeps its one epoch)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from denoise import CONFIG_MODULE
from denoise.files.atomic import atomic_file
from denoise.runtime.errors import SettingError

RECIPE_GROUP = "experiment"  # the config group whose options are recipes
STAGE, STAGES = "stage", "stages"


def apply_stage(cfg: DictConfig) -> None:
    """Merge the chosen stage (with the stages above it) into ``cfg`` and drop ``stages``, so
    that the run, its checkpoints, loggers and ``.hydra/config.yaml`` see the values that
    train; then refuse a stage whose weights (``init_from: ???``) were not given."""
    stages = cfg.get(STAGES)
    chosen = cfg.get(STAGE)
    if stages is not None:
        names = list(stages)
        if chosen not in names:
            raise SettingError(
                f"stage={chosen}: not a stage of {recipe_name()}; one of {', '.join(names)}"
            )
        given = set(given_keys())
        with open_dict(cfg):
            for name in names[: names.index(chosen) + 1]:
                for key, value in leaves(OmegaConf.to_container(stages[name], resolve=False)):
                    if not any(key == set_ or key.startswith(f"{set_}.") for set_ in given):
                        OmegaConf.update(cfg, key, value, force_add=True)
            del cfg[STAGES]
        record_config(cfg)
    elif chosen is not None:
        raise SettingError(f"stage={chosen}: {recipe_name()} has no stages")
    if OmegaConf.is_missing(cfg, "init_from"):
        where = f"stage {chosen} of {recipe_name()}" if chosen else recipe_name()
        raise SettingError(
            f"init_from: {where} starts from the weights of the stage before: pass init_from="
            "outputs/runs/…/checkpoints/last.ckpt (that stage's run, or an exported .ckpt)"
        )


def recipe_name() -> str:
    """``experiment=<recipe>`` as the user chose it (``this recipe`` outside a Hydra run)."""
    if HydraConfig.initialized():
        return f"{RECIPE_GROUP}={HydraConfig.get().runtime.choices.get(RECIPE_GROUP)}"
    return "this recipe"


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Each value of a nested mapping with its dotted key (lists are values)."""
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1], node


def given_keys() -> Iterator[str]:
    """The keys that win over a stage: those set on the command line (not its group choices)
    and those of the config groups the primary config composes after the recipe."""
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    choices = hydra.runtime.choices
    for override in OverridesParser.create().parse_overrides(list(hydra.overrides.task)):
        if override.key_or_group not in choices:
            yield override.key_or_group
    for group in groups_after_recipe(hydra.job.config_name):
        option = choices.get(group)
        path = files(CONFIG_MODULE).joinpath(group, f"{option}.yaml")
        if option is not None and path.is_file():
            settings = OmegaConf.to_container(OmegaConf.create(path.read_text()), resolve=False)
            composed = {k: v for k, v in settings.items() if k not in ("defaults", "hydra")}
            yield from (key for key, _ in leaves(composed))


def groups_after_recipe(config_name: str | None) -> list[str]:
    """The config groups of ``conf/<config_name>.yaml``'s defaults list after the recipe's:
    Hydra merges them over it, so they win over its stages too."""
    path = files(CONFIG_MODULE).joinpath(f"{config_name}.yaml")
    if not config_name or not path.is_file():
        return []
    groups = [
        next(iter(entry))
        for entry in OmegaConf.create(path.read_text()).get("defaults", [])
        if isinstance(entry, Mapping) and not next(iter(entry)).startswith("override ")
    ]
    return groups[groups.index(RECIPE_GROUP) + 1 :] if RECIPE_GROUP in groups else []


def record_config(cfg: DictConfig) -> None:
    """Rewrite the run folder's ``.hydra/config.yaml`` (written by Hydra before the stage was
    merged) with the config that trains, where this process wrote one."""
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    output_dir = OmegaConf.select(hydra, "runtime.output_dir", default=None)  # ??? if composed
    if not output_dir or not hydra.output_subdir:
        return
    path = Path(output_dir) / hydra.output_subdir / "config.yaml"
    if path.is_file():
        with atomic_file(path, mode="w") as handle:
            handle.write(OmegaConf.to_yaml(cfg))
