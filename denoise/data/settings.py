"""Checks of the data settings (``conf/data/``) that every command loading data shares, run
before any data is read, so that a bad value is one line naming the key."""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.data.noise import check_amount
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import number_in, positive_number, setting, whole_number


def check_data_settings(cfg: DictConfig, prefix: str = "data") -> None:
    """The data settings every command that loads data shares."""
    for key in ("height", "width", "channels"):
        whole_number(cfg, f"{prefix}.{key}")
    whole_number(cfg, f"{prefix}.image_size", minimum=8, optional=True)
    whole_number(cfg, f"{prefix}.batch_size")
    whole_number(cfg, f"{prefix}.eval_batch_size", optional=True)
    whole_number(cfg, f"{prefix}.num_workers", minimum=0)
    amount = setting(cfg, f"{prefix}.noise.amount")
    try:
        check_amount(amount)
    except (TypeError, ValueError):
        shown = "[" + ",".join(map(str, amount)) + "]" if isinstance(amount, list) else amount
        raise SettingError(
            f"{prefix}.noise.amount={shown}: must be a fraction in [0, 1] or a [low, high] range"
        ) from None
    number_in(cfg, f"{prefix}.noise.salt_vs_pepper", 0.0, 1.0)
    for key in ("clean_share", "flat_share"):
        number_in(cfg, f"{prefix}.noise.{key}", 0.0, 1.0, optional=True)
    if setting(cfg, f"{prefix}.noise.density_power") is not None:
        positive_number(cfg, f"{prefix}.noise.density_power")
    whole_number(cfg, f"{prefix}.noise.seed", minimum=0)
