"""The work of ``python -m denoise.export`` (its usage: :mod:`denoise.export`): a run's
checkpoint slimmed to what loading needs, with its model card (command, config, time, machine,
figures) beside it; or, with ``format=onnx``, the model as a dynamic-size ONNX file."""

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
from denoise.inference.checkpoints import (
    model_from_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    shipped_weights,
)
from denoise.inference.engines import export_onnx
from denoise.runtime.errors import SettingError, UserError, require_settings
from denoise.runtime.machine import describe_machine
from denoise.runtime.settings import one_of
from denoise.training.summary import read_summary

log = logging.getLogger(__name__)

KEPT_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
CHECKPOINTS = ("best", "last")
FORMATS = ("ckpt", "onnx")
SOURCES = ("run_dir", "ckpt_path", "weights")  # what to export: one of them
USAGE = (
    "python -m denoise.export run_dir=RUN_FOLDER output=FILE.ckpt [checkpoint=best|last], or "
    "format=onnx (run_dir=RUN_FOLDER | ckpt_path=CHECKPOINT | weights=natural|faces) "
    "output=FILE.onnx"
)
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
    """Write what ``format`` asks for, from a checkpoint that was read without running any
    code and that builds its model, so a failed export leaves nothing behind."""
    require_settings(cfg, USAGE)
    kind = one_of(cfg, "format", FORMATS)
    output = Path(cfg.output).expanduser()
    if output.is_dir() or output.suffix != f".{kind}":
        other = next((f"format={name}" for name in FORMATS if output.suffix == f".{name}"), None)
        raise SettingError(
            f"output={cfg.output}: name a .{kind} file to write",
            fix=f"add {other} to write a {output.suffix} file" if other else None,
        )
    written = {output: ""}
    if kind == "ckpt":
        card_path = output.with_suffix(".md")
        if card_path.is_dir():
            raise SettingError(f"output={cfg.output}: {card_path}, its model card, is a folder")
        written[card_path] = "its model card "
    source, run_dir = export_source(cfg, kind)
    for path, what in written.items():
        taken = replaced_source(path, source, run_dir)
        if taken is not None:
            raise SettingError(
                f"output={cfg.output}: {what}would replace {taken}; choose another output path"
            )
    if kind == "onnx":
        return export_onnx_file(source, output)
    assert run_dir is not None, "export_source gives format=ckpt a run folder"
    return export_slim(run_dir, source, output)


def replaced_source(path: Path, source: Path, run_dir: Path | None) -> str | None:
    """What of its own source an export to ``path`` would destroy: a file of the run folder,
    or the checkpoint file itself (by name or link); None if nothing."""
    if run_dir is not None:
        taken = own_file(run_dir, path)
        return None if taken is None else f"the run's own {taken.relative_to(run_dir)}"
    return "its checkpoint" if path.exists() and path.samefile(source) else None


def export_source(cfg: DictConfig, kind: str) -> tuple[Path, Path | None]:
    """The checkpoint to export, and the run folder it is in (None for ``ckpt_path`` or
    ``weights``, which only ``format=onnx`` takes: a slim checkpoint's card needs the run)."""
    given = [key for key in SOURCES if cfg.get(key)]
    if not given:
        raise SettingError("missing run_dir", fix=f"usage: {USAGE}")
    if len(given) > 1:
        listed = " and ".join(f"{key}={cfg[key]}" for key in given)
        raise SettingError(f"{listed}: give one of them, not {len(given)}")
    (key,) = given
    if key != "run_dir" and kind != "onnx":
        raise SettingError(
            f"{key}={cfg[key]}: format=ckpt exports a training run folder (run_dir), whose "
            "model card it writes; format=onnx also takes a checkpoint file or a shipped model"
        )
    if key == "ckpt_path":
        return resolve_checkpoint(cfg.ckpt_path), None
    if key == "weights":
        return shipped_weights(cfg.weights), None
    run_dir = Path(cfg.run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder", fix=f"usage: {USAGE}")
    one_of(cfg, "checkpoint", CHECKPOINTS)
    return resolve_checkpoint(run_dir / "checkpoints" / f"{cfg.checkpoint}.ckpt"), run_dir


def export_onnx_file(source: Path, output: Path) -> Path:
    """The checkpoint's network as an ONNX file for any batch, height and width, checked
    against PyTorch before it is written (:func:`denoise.inference.engines.export_onnx`)."""
    model = model_from_checkpoint(read_checkpoint(source), source)
    log.info("Exporting %s to %s (ONNX)", absolute(source), absolute(output))
    difference = export_onnx(model, output)
    log.info(
        "Wrote %s (%s); on an image of odd size its output differs from PyTorch's by at most %.1e",
        absolute(output),
        human_size(output.stat().st_size),
        difference,
    )
    return output


def export_slim(run_dir: Path, source: Path, output: Path) -> Path:
    """Write the slim checkpoint and its model card (``.md`` beside it), both or neither."""
    card_path = output.with_suffix(".md")
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
