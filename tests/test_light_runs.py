"""Light and quiet runs: ``best.ckpt`` holds the weights only (and what loading them needs),
``last.ckpt`` the whole state that a resume continues from, and a run's console output is one
screen: no library adverts or warnings of Lightning's own calls, one test table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_MODEL, run_command, train_command, user_error

from denoise.inference.checkpoints import load_denoiser
from denoise.training.run import train
from denoise.training.summary import read_summary

FAST = [
    *TINY_MODEL,
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.eval_batch_size=8",
]
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "callbacks")
# lines that Lightning (or torch, through Lightning) printed before: adverts, absent
# accelerators, and warnings about Lightning's own calls
NOT_SHOWN = (
    "litlogger",
    "💡",
    "GPU available",
    "TPU available",
    "HPU available",
    "LeafSpec",
    "is not supported by the model summary",
    "Test metric ",  # the header of Lightning's test table (ours is printed instead)
)


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def _adam_steps(checkpoint: dict[str, Any]) -> int:
    return int(next(iter(checkpoint["optimizer_states"][0]["state"].values()))["step"])


@pytest.mark.slow
def test_a_run_prints_one_screen_and_keeps_weights_only_in_its_best_checkpoint(
    tiny_csv: Path, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    command = train_command(
        tiny_csv,
        tmp_path,
        *FAST,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "data.num_workers=0",
        f"paths.log_dir={outputs}",
    )
    done = run_command(command, tmp_path)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-3000:]

    lines = printed.splitlines()
    assert len(lines) <= 40, printed
    for text in NOT_SHOWN:
        assert text not in printed, printed
    assert "deprecated" not in printed.lower(), printed
    # Lightning's lines come once, through Hydra's log format, not also as "INFO: …"
    assert not [line for line in lines if line.startswith("INFO: ")], printed
    assert printed.count("Test metrics of the best checkpoint:") == 1
    assert len([line for line in lines if "] - Model: " in line]) == 1, printed

    (checkpoints,) = outputs.glob("runs/*/*/checkpoints")
    best, last = _load(checkpoints / "best.ckpt"), _load(checkpoints / "last.ckpt")
    assert not [key for key in TRAINING_STATE if key in best]
    assert {"state_dict", "hyper_parameters", "epoch"} <= set(best)
    assert all(key in last for key in TRAINING_STATE)
    # one epoch: the best epoch is the last one, so both hold the very same weights
    assert best["state_dict"].keys() == last["state_dict"].keys()
    for name, tensor in best["state_dict"].items():
        assert torch.equal(tensor, last["state_dict"][name]), name
    size = (checkpoints / "best.ckpt").stat().st_size
    assert size < 0.5 * (checkpoints / "last.ckpt").stat().st_size
    model = load_denoiser(checkpoints / "best.ckpt", device="cpu")  # predict, evaluate, export
    loaded = model.state_dict()
    assert loaded.keys() == best["state_dict"].keys()
    assert all(torch.equal(loaded[name], best["state_dict"][name]) for name in loaded)


@pytest.mark.slow
def test_a_resume_continues_after_the_last_epoch_not_the_best(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys
) -> None:
    first = tmp_path / "first"
    # mode=max keeps epoch 0 as the best while training lowers val/loss: the best and the
    # last checkpoint differ, and a last.ckpt copied from the best would hold epoch 0
    best_is_first = "callbacks.model_checkpoint.mode=max"
    common = [f"data.csv_path={tiny_csv}", *FAST, best_is_first, "logger=none"]
    train(compose_train(*common, "trainer.max_epochs=2", output_dir=first))
    best, last = first / "checkpoints" / "best.ckpt", first / "checkpoints" / "last.ckpt"
    assert _load(best)["epoch"] == 0 and "optimizer_states" not in _load(best)
    assert _load(last)["epoch"] == 1
    assert _adam_steps(_load(last)) == 4  # two epochs of two batches: the real last state
    history = read_summary(first)["val_history"]

    refused = user_error(
        train,
        compose_train(
            *common, "trainer.max_epochs=3", f"ckpt_path={best}", output_dir=tmp_path / "no"
        ),
        capsys,
    )
    assert refused[0] == (
        f"error: {best}: holds weights only (an exported model?), not a training state to resume"
    )
    assert "last.ckpt" in " ".join(refused[1:])

    resumed = tmp_path / "resumed"
    train(compose_train(*common, "trainer.max_epochs=3", f"ckpt_path={last}", output_dir=resumed))
    summary = read_summary(resumed)
    assert [epoch["epoch"] for epoch in summary["val_history"]] == [0, 1, 2]
    assert summary["val_history"][:2] == history  # inherited, not trained again
    assert summary["epochs_completed"] == 3
    assert _adam_steps(_load(resumed / "checkpoints" / "last.ckpt")) == 6  # one epoch more
    assert summary["best_epoch"]["epoch"] == 0
    assert _load(resumed / "checkpoints" / "best.ckpt")["epoch"] == 0
