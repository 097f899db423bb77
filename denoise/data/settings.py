"""Checks of the data settings (``conf/data/``) that every command loading data shares, run
before any data is read, so that a bad value is one line naming the key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from denoise.data.noise import Amount, check_amount
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import (
    number_in,
    one_of,
    positive_number,
    setting,
    shown,
    whole_number,
)

FER_TARGET = "denoise.data.datamodule.FERDataModule"
FOLDER_TARGET = "denoise.data.folder.FolderDataModule"
EVAL_CROPS = ("center", "whole")  # denoise.data.folder.EVAL_CROPS, without importing torch here


def check_data_settings(cfg: DictConfig, prefix: str = "data") -> None:
    """The data settings every command that loads data shares, for the source the config
    names (``data=fer`` or ``data=folder``)."""
    if setting(cfg, f"{prefix}._target_") == FOLDER_TARGET:
        check_folder_settings(cfg, prefix)
    else:
        for key in ("height", "width", "channels"):
            whole_number(cfg, f"{prefix}.{key}")
        whole_number(cfg, f"{prefix}.image_size", minimum=8, optional=True)
    _check_loading_and_noise(cfg, prefix)


def check_folder_settings(cfg: DictConfig, prefix: str = "data") -> None:
    """``data=folder``: the folders, the split shares and the crops. (Whether the folders
    exist and hold images is the data module's check, when it reads them.)"""
    node = OmegaConf.select(cfg, prefix)
    if OmegaConf.is_missing(node, "train_dir") or not _is_path(setting(cfg, f"{prefix}.train_dir")):
        raise SettingError(
            f"{prefix}.train_dir: missing; data=folder needs a folder of images",
            fix=f"e.g. data=folder {prefix}.train_dir=FOLDER "
            f"[{prefix}.val_dir=FOLDER {prefix}.test_dir=FOLDER]",
        )
    shares = []
    for split in ("val", "test"):
        folder = setting(cfg, f"{prefix}.{split}_dir")
        if folder is not None and not _is_path(folder):
            raise SettingError(f"{prefix}.{split}_dir={shown(folder)}: must be a folder (or null)")
        if folder is None:
            key = f"{prefix}.{split}_share"
            share = number_in(cfg, key, 0.0, 1.0, high_open=True)
            if share == 0:
                raise SettingError(
                    f"{key}=0: the {split} split would be empty; give it a share above 0 "
                    f"or its own folder ({prefix}.{split}_dir)"
                )
            shares.append((key, share))
    if sum(share for _, share in shares) >= 1:
        listed = " + ".join(f"{key}={share:g}" for key, share in shares)
        raise SettingError(f"{listed}: leave no files for training; their sum must be below 1")
    whole_number(cfg, f"{prefix}.split_seed", minimum=0)
    if not isinstance(setting(cfg, f"{prefix}.recursive"), bool):
        raise SettingError(
            f"{prefix}.recursive={shown(setting(cfg, f'{prefix}.recursive'))}: "
            "must be true or false"
        )
    channels = whole_number(cfg, f"{prefix}.channels")
    if channels not in (1, 3):
        raise SettingError(f"{prefix}.channels={channels}: must be 1 (grey) or 3 (RGB)")
    whole_number(cfg, f"{prefix}.crop_size", minimum=8)
    whole_number(cfg, f"{prefix}.crops_per_image")
    clipped = number_in(cfg, f"{prefix}.clipped_share", 0.0, 1.0, optional=True)
    number_in(cfg, f"{prefix}.clipped_max", 0.0, 0.5, optional=True)
    faded = number_in(cfg, f"{prefix}.faded_share", 0.0, 1.0, optional=True)
    if faded and clipped and faded + clipped > 1:
        raise SettingError(
            f"{prefix}.clipped_share={clipped} and {prefix}.faded_share={faded}: "
            "shares of the same crops; their sum must be at most 1"
        )
    whole_number(cfg, f"{prefix}.faded_range", minimum=4, optional=True)
    one_of(cfg, f"{prefix}.eval_crop", EVAL_CROPS)
    whole_number(cfg, f"{prefix}.eval_crop_size", minimum=8, optional=True)


def _is_path(value: object) -> bool:
    """A folder name as the command line gives it (``2024`` arrives as a number)."""
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""


def _check_loading_and_noise(cfg: DictConfig, prefix: str) -> None:
    whole_number(cfg, f"{prefix}.batch_size")
    whole_number(cfg, f"{prefix}.eval_batch_size", optional=True)
    whole_number(cfg, f"{prefix}.num_workers", minimum=0)
    noise_amount(cfg, f"{prefix}.noise.amount")
    number_in(cfg, f"{prefix}.noise.salt_vs_pepper", 0.0, 1.0)
    for key in ("clean_share", "flat_share", "pixel_share"):
        number_in(cfg, f"{prefix}.noise.{key}", 0.0, 1.0, optional=True)
    if setting(cfg, f"{prefix}.noise.density_power") is not None:
        positive_number(cfg, f"{prefix}.noise.density_power")
    whole_number(cfg, f"{prefix}.noise.seed", minimum=0)


def noise_amount(cfg: DictConfig, key: str) -> Amount:
    """A noise amount: a fraction in [0, 1] or a ``[low, high]`` range of them (training's
    ``data.noise.amount``, ``add_noise``'s ``amount``)."""
    amount = setting(cfg, key)
    try:
        check_amount(amount)
    except (TypeError, ValueError):
        raise SettingError(
            f"{key}={shown(amount)}: must be a fraction in [0, 1] or a [low, high] range"
        ) from None
    return amount
