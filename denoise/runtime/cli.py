"""The Hydra entry point every command shares (``@command("predict")``), and a ``--help``
that computes only what its template prints.

Hydra 1.3 renders a help template after listing every config group for ``$APP_CONFIG_GROUPS``
and ``$HYDRA_CONFIG_GROUPS``, composing the config once more for each group: seconds for
``train``, whose template (``conf/hydra/help/command.yaml``) prints neither. Here each field
is computed when the template names it, so ``--hydra-help`` and any other template still get
Hydra's own text.
"""

from __future__ import annotations

import string
from argparse import ArgumentParser
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import hydra
from hydra._internal.hydra import Hydra
from omegaconf import DictConfig, OmegaConf

from denoise import CONFIG_PATH


def command(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``@hydra.main`` with the package's config (``conf/<config_name>.yaml``)."""
    Hydra.get_help = help_on_demand  # type: ignore[method-assign]
    return hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)


class OnDemand(Mapping[str, str]):
    """Template fields computed when a template names them."""

    def __init__(self, fields: Mapping[str, Callable[[], str]]) -> None:
        self.fields = fields

    def __getitem__(self, key: str) -> str:
        return self.fields[key]()

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


def help_on_demand(
    self: Hydra, help_cfg: DictConfig, cfg: DictConfig, args_parser: ArgumentParser, resolve: bool
) -> str:
    """Hydra's ``get_help``, with each field computed only where the template uses it."""

    def groups(of_hydra: bool) -> Callable[[], str]:
        def listing() -> str:
            return self.format_config_groups(
                lambda name: (name == "hydra" or name.startswith("hydra/")) == of_hydra
            )

        return listing

    fields = {
        "FLAGS_HELP": lambda: self.format_args_help(args_parser),
        "HYDRA_CONFIG_GROUPS": groups(True),
        "APP_CONFIG_GROUPS": groups(False),
        "CONFIG": lambda: OmegaConf.to_yaml(cfg, resolve=resolve),
    }
    return string.Template(help_cfg.template).substitute(OnDemand(fields))
