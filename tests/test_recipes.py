"""Recipes with stages (``experiment=faces|natural stage=…``): each stage trains what the
chain of recipe files it replaced trained, the command line and ``debug`` win over a stage,
and a wrong stage or a forgotten ``init_from`` is one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import user_error
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from denoise import CONFIG_MODULE
from denoise.runtime.errors import SettingError
from denoise.training.recipe import apply_stage
from denoise.training.run import train
from denoise.training.warm_start import init_path

SECTIONS = ("data", "model", "optimizer", "scheduler", "trainer")
GROUPS = ("data", "model", "model/net", "optimizer", "scheduler", "trainer")
FACES_GROUPS = {"data": "fer", "model": "corruption_aware", "model/net": "corruption_aware",
                "optimizer": "adam", "scheduler": "cosine", "trainer": "default"}  # fmt: skip
FOLDER_GROUPS = {**FACES_GROUPS, "data": "folder"}
REQUIRED = "???"
NATURAL_SHARED = {
    "data.eval_crop": "whole",
    "data.noise.amount": [0.0, 0.95],
    "data.noise.clean_share": 0.03,
    "data.noise.flat_share": 0.01,
    "model.net.global_context": True,
}
CROPS_96 = {
    **NATURAL_SHARED,
    "data.crops_per_image": 160,
    "data.clipped_share": 0.25,
    "data.batch_size": 128,
    "data.num_workers": 6,
    "data.crop_size": 96,
    "optimizer.lr": 0.0005,
    "trainer.max_epochs": 30,
    "trainer.benchmark": True,
}
CROPS_128 = {
    **CROPS_96,
    "data.crop_size": 128,
    "data.crops_per_image": 90,
    "data.num_workers": 12,
    "optimizer.lr": 0.0002,
    "trainer.max_epochs": 27,
}
WIDEN_16 = {
    **CROPS_128,
    "model.net.base_channels": 16,
    "data.num_workers": 14,
    "trainer.max_epochs": 59,
}

# What the old chain of recipe files composed (conf/experiment/blind.yaml …
# blind_natural_gpu_wide_176.yaml, blind_natural_colour.yaml; deleted), written down before
# they went: the group options, every setting that differs from those options' own defaults,
# and init_from ("???" where a stage needs the weights of the one before; the old chain's
# "shipped" is the face model, "faces").
OLD_CHAIN: dict[tuple[str, str | None], tuple[dict[str, str], dict[str, Any], str | None]] = {
    ("faces", None): (  # experiment=blind
        FACES_GROUPS,
        {"data.noise.amount": [0.0, 0.95], "optimizer.lr": 0.002, "trainer.max_epochs": 30},
        None,
    ),
    ("faces", "clean_and_flat"): (  # experiment=blind_refine
        FACES_GROUPS,
        {
            "data.noise.amount": [0.0, 0.95],
            "data.noise.clean_share": 0.03,
            "data.noise.flat_share": 0.01,
            "model.net.global_context": True,
            "trainer.max_epochs": 14,
        },
        REQUIRED,
    ),
    ("natural", None): (  # experiment=blind_natural
        FOLDER_GROUPS,
        {**NATURAL_SHARED, "data.crops_per_image": 8, "trainer.max_epochs": 60},
        "faces",
    ),
    ("natural", "exposure"): (  # experiment=blind_natural_exposure
        FOLDER_GROUPS,
        {
            **NATURAL_SHARED,
            "data.crops_per_image": 8,
            "data.clipped_share": 0.25,
            "optimizer.lr": 0.0003,
            "trainer.max_epochs": 20,
        },
        REQUIRED,
    ),
    ("natural", "crops_96"): (FOLDER_GROUPS, CROPS_96, REQUIRED),  # experiment=blind_natural_gpu
    ("natural", "crops_128"): (FOLDER_GROUPS, CROPS_128, REQUIRED),  # …_gpu_128
    ("natural", "widen_16"): (FOLDER_GROUPS, WIDEN_16, REQUIRED),  # …_gpu_wide
    ("natural", "crops_176"): (  # experiment=blind_natural_gpu_wide_176
        FOLDER_GROUPS,
        {**WIDEN_16, "data.crop_size": 176, "optimizer.lr": 0.0001, "trainer.max_epochs": 18},
        REQUIRED,
    ),
    ("natural_colour", None): (  # experiment=blind_natural_colour
        FOLDER_GROUPS,
        {
            "data.channels": 3,
            "data.crop_size": 96,
            "data.crops_per_image": 4,
            "data.eval_crop_size": 256,
            "data.noise.amount": [0.0, 0.95],
            "data.noise.clean_share": 0.03,
            "data.noise.flat_share": 0.01,
            "data.noise.pixel_share": 0.3,
            "model.net.base_channels": 16,
            "model.net.global_context": True,
            "model.net.cross_channel": True,
            "model.net.colour_sigma": 1.0,
            "model.net.luminance_sigma": 1.0,
            "optimizer.lr": 5e-05,
            "trainer.max_epochs": 8,
        },
        "natural",
    ),
}


def train_config(*overrides: str, output_dir: Path | None = None) -> DictConfig:
    """``conf/train.yaml`` with exactly ``overrides`` on its command line, as a run sees it
    (HydraConfig set, so that the command line is known)."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def sections(cfg: DictConfig) -> dict[str, Any]:
    return {name: OmegaConf.to_container(cfg[name], resolve=False) for name in SECTIONS}


@pytest.mark.parametrize(
    ("recipe", "stage"), list(OLD_CHAIN), ids=[f"{r}-{s}" for r, s in OLD_CHAIN]
)
def test_each_stage_trains_what_the_old_chain_of_recipe_files_did(
    recipe: str, stage: str | None
) -> None:
    groups, settings, init_from = OLD_CHAIN[recipe, stage]
    expected = train_config(*(f"{group}={option}" for group, option in groups.items()))
    for key, value in settings.items():
        OmegaConf.update(expected, key, value, force_add=True)  # trainer.benchmark is new
    chosen = [f"stage={stage}"] if stage else []
    cfg = train_config(f"experiment={recipe}", *chosen)
    assert {g: cfg.hydra.runtime.choices[g] for g in GROUPS} == groups
    if init_from == REQUIRED:
        with pytest.raises(SettingError, match=f"init_from: stage {stage} of experiment={recipe}"):
            apply_stage(cfg)
        cfg = train_config(f"experiment={recipe}", *chosen, "init_from=given.ckpt")
    apply_stage(cfg)
    assert sections(cfg) == sections(expected)
    if init_from != REQUIRED:
        assert init_path(cfg.init_from) == init_path(init_from)
    assert "stages" not in cfg


def test_the_command_line_and_debug_win_over_the_stage() -> None:
    cfg = train_config(
        "experiment=natural",
        "stage=widen_16",
        "init_from=given.ckpt",
        "optimizer.lr=0.01",
        "data.crop_size=80",
        "debug=quick",
    )
    apply_stage(cfg)
    assert cfg.optimizer.lr == 0.01 and cfg.data.crop_size == 80  # the command line's
    assert cfg.trainer.max_epochs == 1 and cfg.data.num_workers == 0  # debug=quick's
    assert cfg.model.net.base_channels == 16 and cfg.data.batch_size == 128  # the stages'
    assert cfg.init_from == "given.ckpt"


def test_the_run_folder_records_the_config_that_trains(tmp_path: Path) -> None:
    record = tmp_path / ".hydra" / "config.yaml"
    record.parent.mkdir()
    record.write_text("as Hydra wrote it\n")
    cfg = train_config(
        "experiment=faces", "stage=clean_and_flat", "init_from=given.ckpt", output_dir=tmp_path
    )
    apply_stage(cfg)
    recorded = OmegaConf.load(record)
    assert recorded.stage == "clean_and_flat" and "stages" not in recorded
    assert recorded.optimizer.lr == 0.001 and recorded.trainer.max_epochs == 14
    assert recorded.model.net.global_context is True


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["experiment=natural", "stage=crops_64"],
            "error: stage=crops_64: not a stage of experiment=natural; one of from_faces, "
            "exposure, crops_96, crops_128, widen_16, crops_176",
        ),
        (
            ["experiment=natural", "stage=exposure"],
            "error: init_from: stage exposure of experiment=natural starts from the weights of "
            "the stage before: pass init_from=outputs/runs/…/checkpoints/last.ckpt (that "
            "stage's run, or an exported .ckpt)",
        ),
        (
            ["experiment=reference", "stage=exposure"],
            "error: stage=exposure: experiment=reference has no stages",
        ),
    ],
)
def test_a_wrong_stage_or_missing_weights_is_one_line_before_any_work(
    tmp_path: Path, capsys, overrides: list[str], line: str
) -> None:
    cfg = train_config(*overrides, f"paths.log_dir={tmp_path}", output_dir=tmp_path / "run")
    cfg.paths.output_dir = str(tmp_path / "run")
    assert user_error(train, cfg, capsys) == [line]
    assert not (tmp_path / "run").exists()
