"""What a training run checks before the Trainer starts: its settings and the checkpoint it
resumes from. (The data is loaded and checked by the DataModule before the Trainer starts too:
see ``train.py``.) Each problem is a one-line :class:`~denoise.runtime.errors.UserError`."""

from __future__ import annotations

from omegaconf import DictConfig

from denoise.data.settings import check_data_settings
from denoise.inference.checkpoints import CheckpointError, read_checkpoint, resolve_checkpoint
from denoise.models.losses import LOSSES
from denoise.models.module import ARCHITECTURES
from denoise.runtime.errors import SettingError
from denoise.runtime.settings import (
    batch_limit,
    number_in,
    one_of,
    positive_number,
    setting,
    whole_number,
)

# The hyperparameters that shape the network: a checkpoint resumes only into the same ones.
NETWORK_KEYS = (
    "architecture",
    "in_channels",
    "out_channels",
    "base_channels",
    "depth",
    "global_context",
    "attention_levels",
    "refine_channels",
    "attention_gates",
)
# What checkpoints from before a key existed were trained with.
NETWORK_DEFAULTS = {
    "global_context": False,
    "attention_levels": 0,
    "refine_channels": 0,
    "attention_gates": False,
}


def check_training_settings(cfg: DictConfig) -> None:
    """Every value that would fail, or silently train nothing, once the run has started."""
    check_data_settings(cfg)
    one_of(cfg, "model.architecture", ARCHITECTURES)
    one_of(cfg, "model.loss", tuple(LOSSES))
    whole_number(cfg, "model.base_channels")
    whole_number(cfg, "model.depth", minimum=2)
    number_in(cfg, "model.dropout", 0.0, 1.0, high_open=True)
    if (
        setting(cfg, "model.global_context")
        and setting(cfg, "model.architecture") != "corruption_aware"
    ):
        raise SettingError(
            "model.global_context=true: only the corruption_aware architecture has it"
        )
    levels = whole_number(cfg, "model.attention_levels", minimum=0, optional=True)
    if levels is not None and levels > setting(cfg, "model.depth"):
        raise SettingError(
            f"model.attention_levels={levels}: more than the {setting(cfg, 'model.depth')} "
            "levels of the U-Net (model.depth)"
        )
    refine = whole_number(cfg, "model.refine_channels", minimum=0, optional=True)
    if refine and setting(cfg, "model.architecture") != "corruption_aware":
        raise SettingError(
            "model.refine_channels: only the corruption_aware architecture has a refinement stage"
        )
    if setting(cfg, "model.attention_gates") and setting(cfg, "model.architecture") != "unet":
        raise SettingError(
            "model.attention_gates=true: the gates are a setting of the unet architecture "
            "(the Attention U-Net)"
        )
    if setting(cfg, "optimizer.lr") is not None:
        positive_number(cfg, "optimizer.lr")
    epochs = setting(cfg, "trainer.max_epochs")
    if epochs is not None and epochs != -1:
        whole_number(cfg, "trainer.max_epochs")  # 0 would "complete" an untrained model
    batch_limit(cfg, "trainer.limit_train_batches", "train nothing")
    batch_limit(cfg, "trainer.limit_val_batches", "never validate (the best checkpoint needs it)")
    if cfg.get("test", True):
        batch_limit(cfg, "trainer.limit_test_batches", "test nothing")


def check_resume(cfg: DictConfig) -> None:
    """A checkpoint to resume from must be a training checkpoint of this very network."""
    if not cfg.get("ckpt_path"):
        return
    path = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = read_checkpoint(path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(
            f"{path}: holds weights only (an exported model?), not a training state to resume",
            fix="resume from a run's checkpoints/last.ckpt",
        )
    saved = checkpoint["hyper_parameters"]
    differ = [
        key
        for key in NETWORK_KEYS
        if saved.get(key, NETWORK_DEFAULTS.get(key))
        != _or_default(setting(cfg, f"model.{key}"), key)
    ]
    if differ:
        was = ", ".join(f"model.{key}={saved.get(key)}" for key in differ)
        now = ", ".join(f"model.{key}={setting(cfg, f'model.{key}')}" for key in differ)
        raise CheckpointError(
            f"{path}: trained with {was}; this run has {now}",
            fix="resume with the checkpoint's settings (e.g. model=corruption_aware)",
        )


def _or_default(value: object, key: str) -> object:
    return NETWORK_DEFAULTS.get(key) if value is None else value
