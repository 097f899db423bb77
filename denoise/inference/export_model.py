"""Turn a training run into a small, self-describing weights file and its model card.

``python -m denoise.export run_dir=outputs/runs/… output=denoise/weights/blind-fer2013.ckpt``

The file keeps what ``DenoisingModule.load_from_checkpoint`` needs (weights and the flat
hyperparameters) and drops the optimizer state, which triples a training checkpoint's
size. The card (same name, ``.md``) gives the exact command and config that trained it,
the wall time and the machine, and the run's validation and test figures.
"""

from __future__ import annotations

import logging
import os
import shlex
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig

from denoise.files.atomic import atomic_files
from denoise.files.outputs import absolute, human_size
from denoise.files.reading import read_text
from denoise.inference.checkpoints import model_from_checkpoint, read_checkpoint, resolve_checkpoint
from denoise.runtime.errors import SettingError, UserError, require_settings
from denoise.runtime.machine import describe_machine
from denoise.training.summary import read_summary

log = logging.getLogger(__name__)

KEPT_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
CHECKPOINTS = ("best", "last")
USAGE = "python -m denoise.export run_dir=RUN_FOLDER output=FILE.ckpt [checkpoint=best|last]"
CARD_KEY = "denoise_card"


def training_card(run_dir: Path) -> dict[str, Any]:
    """What a run says about itself: command, config, time, machine and figures."""
    summary = read_summary(run_dir)
    if summary is None or summary.get("status") != "completed":
        state = "no summary.json" if summary is None else f"status {summary.get('status')!r}"
        raise UserError(f"{run_dir}: not a completed training run ({state})")
    hydra_dir = run_dir / ".hydra"
    records = (hydra_dir / "overrides.yaml", hydra_dir / "config.yaml")
    if not all(os.path.lexists(record) for record in records):
        raise UserError(f"{run_dir}: no .hydra/config.yaml and overrides.yaml: not a run folder")
    overrides = run_overrides(records[0])
    return {
        "command": shlex.join(["python", "-m", "denoise.train", *overrides]),
        "config": read_text(records[1]),
        "wall_time_s": summary.get("wall_time_s"),
        "epochs": summary.get("epochs_completed"),
        "machine": summary.get("machine")
        or f"{describe_machine()} (the exporting machine: the run did not record its own)",
        "best_epoch": summary.get("best_epoch"),
        "test": summary.get("test"),
        "run_dir": str(run_dir),
        "started_from": parent_card(summary.get("warm_started_from")),
    }


def run_overrides(path: Path) -> list[str]:
    """The command-line overrides a run recorded: a YAML list of strings, parsed safely (a
    YAML tag such as ``!!python/object/apply`` is refused, never run)."""
    try:
        overrides = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise UserError(f"{path}: not a valid run record ({problem})") from None
    overrides = [] if overrides is None else overrides
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise UserError(f"{path}: not a valid run record (not a list of key=value overrides)")
    return overrides


def own_file(run_dir: Path, path: Path) -> Path | None:
    """The file of the run folder that ``path`` is (by name, symbolic or hard link), if any:
    an export over it would destroy the run it is made from."""
    if not path.exists():
        return None
    target = path.stat()
    for folder, _, names in os.walk(run_dir):
        for name in names:
            candidate = Path(folder, name)
            with suppress(OSError):
                found = candidate.stat()
                if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                    return candidate
    return None


def parent_card(path: str | None) -> dict[str, Any] | None:
    """The card of the weights a warm-started run began from, so that a model trained in
    stages keeps its whole recipe (an exported file carries its card; a raw checkpoint
    only its path)."""
    if not path:
        return None
    try:
        checkpoint = read_checkpoint(path)
    except (UserError, OSError):
        return {"weights": path, "command": None}
    return checkpoint.get(CARD_KEY) or {"weights": path, "command": None}


def slim_checkpoint(checkpoint: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The loadable part of a training checkpoint, plus the card."""
    return {**{key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}, CARD_KEY: card}


def card_markdown(card: dict[str, Any], weights: Path, size: int, parameters: int) -> str:
    """The model card a person reads beside the weights (``size`` bytes)."""
    megabytes = size / 1e6
    minutes = (card["wall_time_s"] or 0) / 60
    lines = [
        f"# {weights.name}",
        "",
        f"{parameters:,} parameters, {megabytes:.1f} MB. "
        f"Trained for {card['epochs']} epochs in {minutes:.1f} min on {card['machine']}.",
        "",
        "Command (from the repository root):",
        "",
        "```",
        card["command"],
        "```",
    ]
    for title, metrics in (("Best validation epoch", card["best_epoch"]), ("Test", card["test"])):
        if metrics:
            lines += ["", f"{title}:", "", "| metric | value |", "|---|---|"]
            lines += [f"| {name} | {value:.6g} |" for name, value in metrics.items()]
    lines += ["", "Config (`.hydra/config.yaml` of the run):", "", "```yaml"]
    lines += [card["config"].rstrip(), "```", ""]
    lines += started_from_markdown(card.get("started_from"))
    return "\n".join(lines)


def started_from_markdown(parent: dict[str, Any] | None, depth: int = 1) -> list[str]:
    """The earlier stages of a model trained in stages, latest first."""
    if not parent:
        return []
    heading = "#" * min(depth + 1, 6)
    if not parent.get("command"):
        return [f"{heading} Started from {parent.get('weights')}", "", "(no card recorded)", ""]
    minutes = (parent.get("wall_time_s") or 0) / 60
    lines = [
        f"{heading} Started from the weights of an earlier run",
        "",
        f"{parent.get('epochs')} epochs in {minutes:.1f} min on {parent.get('machine')}:",
        "",
        "```",
        parent["command"],
        "```",
        "",
    ]
    return lines + started_from_markdown(parent.get("started_from"), depth + 1)


def export(cfg: DictConfig) -> Path:
    """Write the slim checkpoint and its card, from a checkpoint that was read without running
    any code and that builds its model, so a failed export leaves nothing behind."""
    require_settings(cfg, USAGE)
    run_dir = Path(cfg.run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder", fix=f"usage: {USAGE}")
    if cfg.checkpoint not in CHECKPOINTS:
        raise SettingError(f"checkpoint={cfg.checkpoint}: must be one of {', '.join(CHECKPOINTS)}")
    source = resolve_checkpoint(run_dir / "checkpoints" / f"{cfg.checkpoint}.ckpt")
    output = Path(cfg.output).expanduser()
    card_path = output.with_suffix(".md")
    if output.is_dir() or output.suffix != ".ckpt":
        raise SettingError(f"output={cfg.output}: name a .ckpt file to write")
    if card_path.is_dir():
        raise SettingError(f"output={cfg.output}: {card_path}, its model card, is a folder")
    for path, what in ((output, ""), (card_path, "its model card ")):
        taken = own_file(run_dir, path)
        if taken is not None:
            raise SettingError(
                f"output={cfg.output}: {what}would replace the run's own "
                f"{taken.relative_to(run_dir)}; choose another output path"
            )
    card = training_card(run_dir)
    checkpoint = read_checkpoint(source)
    model = model_from_checkpoint(checkpoint, source)
    log.info("Exporting %s to %s", absolute(source), absolute(output))
    parameters = sum(parameter.numel() for parameter in model.parameters())
    with atomic_files() as files:  # the weights and their card: both, or neither
        with files.add(output) as handle:
            torch.save(slim_checkpoint(checkpoint, card), handle)
            written = handle.tell()
        with files.add(card_path, mode="w") as handle:
            handle.write(card_markdown(card, output, written, parameters))
    size = human_size(output.stat().st_size)
    log.info("Wrote %s (%s) and its model card %s", absolute(output), size, absolute(card_path))
    return output
