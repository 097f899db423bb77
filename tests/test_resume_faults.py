"""Resuming and the faults of a training run: ``last.ckpt`` is every epoch's, a resume
(after a clean end or a SIGKILL) continues the history once per epoch and keeps the run's
best, and the settings, checkpoints and disks that would stop a run mid-way are one line
before the Trainer starts (or, for a full disk, one line naming the checkpoint)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import TINY_MODEL, killed_when, train_command, user_error

from denoise.training import checkpoint_io
from denoise.training.callbacks import MetricHistory
from denoise.training.run import train
from denoise.training.summary import read_summary

FAST = [
    *TINY_MODEL,
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "logger=none",
]
# best.ckpt keeps the highest val/loss: as training lowers it, only epoch 0 is ever "best",
# and every later epoch is one where the monitored metric did not improve
BEST_IS_FIRST = "callbacks.model_checkpoint.mode=max"


def _epoch(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, weights_only=True)["epoch"])


def _epochs(summary: dict[str, Any]) -> list[int]:
    return [epoch["epoch"] for epoch in summary["val_history"]]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- last.ckpt and resuming


@pytest.mark.slow
def test_last_checkpoint_is_each_epoch_and_a_resume_keeps_the_best(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys
) -> None:
    first = tmp_path / "first"
    train(
        compose_train(
            f"data.csv_path={tiny_csv}",
            *FAST,
            BEST_IS_FIRST,
            "trainer.max_epochs=3",
            output_dir=first,
        )
    )
    last, best = first / "checkpoints" / "last.ckpt", first / "checkpoints" / "best.ckpt"
    assert _epoch(last) == 2  # though val/loss did not "improve" after epoch 0
    assert _epoch(best) == 0
    assert read_summary(first)["best_epoch"]["epoch"] == 0
    kept = _files(first)

    done = compose_train(
        f"data.csv_path={tiny_csv}",
        *FAST,
        "trainer.max_epochs=3",
        BEST_IS_FIRST,
        f"ckpt_path={last}",
        output_dir=tmp_path / "again",
    )
    assert user_error(train, done, capsys) == [
        f"error: {last}: this run already finished its 3 epochs (trainer.max_epochs=3); "
        "raise trainer.max_epochs to train on"
    ]
    assert not (tmp_path / "again").exists()

    resumed = tmp_path / "resumed"
    train(
        compose_train(
            f"data.csv_path={tiny_csv}",
            *FAST,
            "trainer.max_epochs=5",
            BEST_IS_FIRST,
            f"ckpt_path={last}",
            output_dir=resumed,
        )
    )
    summary = read_summary(resumed)
    assert _epochs(summary) == [0, 1, 2, 3, 4]
    assert summary["epochs_completed"] == 5
    # the best is still epoch 0, from before the resume: its checkpoint came along
    assert summary["best_epoch"]["epoch"] == _epoch(resumed / "checkpoints" / "best.ckpt") == 0
    assert summary["best_checkpoint"] == str(resumed / "checkpoints" / "best.ckpt")
    assert _epoch(resumed / "checkpoints" / "last.ckpt") == 4
    assert _files(first) == kept  # the resumed run wrote nothing into the first one's folder


@pytest.mark.slow
def test_a_run_killed_after_its_second_epoch_resumes_where_it_stopped(
    tiny_csv: Path, compose_train, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    command = train_command(
        tiny_csv,
        tmp_path,
        *FAST,
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1000",
        f"hydra.run.dir={killed}",
    )
    last = killed / "checkpoints" / "last.ckpt"

    def second_epoch_ended() -> bool:  # last.ckpt is renamed into place: whole or absent
        return last.exists() and _epoch(last) >= 1

    with killed_when(command, tmp_path, second_epoch_ended, 120, "second epoch"):
        pass  # killed as soon as it ended
    stopped = _epoch(last)  # the last epoch that ended; the one under way is lost
    assert read_summary(killed)["status"] == "died"

    resumed = tmp_path / "resumed"
    cfg = compose_train(
        f"data.csv_path={tiny_csv}",
        *FAST,
        f"trainer.max_epochs={stopped + 3}",
        f"ckpt_path={last}",
        output_dir=resumed,
    )
    train(cfg)
    summary = read_summary(resumed)
    assert _epochs(summary) == list(range(stopped + 3))  # each epoch once
    assert summary["epochs_completed"] == stopped + 3
    best = min(summary["val_history"], key=lambda epoch: epoch["val/loss"])
    assert summary["best_epoch"]["epoch"] == best["epoch"]
    assert _epoch(resumed / "checkpoints" / "best.ckpt") == best["epoch"]
    assert summary["resumed_from"] == str(last)
    # the epoch under way at the kill starts again from its first batch: no step twice
    assert (
        torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == (stopped + 3) * 2
    )


# ---------------------------------------------------------------- checkpoints that cannot resume


def _edited(source: Path, target: Path, edit: Any) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


@pytest.mark.slow
def test_resume_refuses_a_tensor_of_another_shape_and_a_lost_best(
    compose_train, tiny_csv: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    last = tiny_checkpoint.parent / "last.ckpt"
    saved = torch.load(last, weights_only=True)["state_dict"]
    name = next(key for key, tensor in saved.items() if tensor.ndim == 4)  # a conv's weights
    shape = tuple(saved[name].shape)

    def widen(checkpoint: dict[str, Any]) -> None:
        weights = checkpoint["state_dict"][name]
        checkpoint["state_dict"][name] = torch.zeros(weights.shape[0] + 1, *weights.shape[1:])

    edited = _edited(last, tmp_path / "edited.ckpt", widen)
    cfg = compose_train(
        f"data.csv_path={tiny_csv}", *FAST, "trainer.max_epochs=2", f"ckpt_path={edited}"
    )
    assert user_error(train, cfg, capsys) == [
        f"error: {edited}: its {name} is {(shape[0] + 1, *shape[1:])}; this run's model's is "
        f"{shape}",
        "resume from a checkpoint that this run's settings wrote (its last.ckpt)",
    ]
    assert not (tmp_path / "run").exists()

    tiny_checkpoint.unlink()  # the run's best.ckpt
    cfg = compose_train(
        f"data.csv_path={tiny_csv}", *FAST, "trainer.max_epochs=2", f"ckpt_path={last}"
    )
    assert user_error(train, cfg, capsys) == [
        f"error: {last}: the best checkpoint of its run, {tiny_checkpoint}, is gone; a resumed "
        "run could not keep its best",
        f"put it back, or train on from these weights with a fresh schedule: init_from={last}",
    ]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- settings the Trainer refuses

SETTINGS = [
    ("seed=abc", ["error: seed=abc: must be a whole number of at least 0 (or null)"]),
    (
        "seed=4294967296",
        ["error: seed=4294967296: must be at most 4294967295 (numpy's seeds are 32-bit)"],
    ),
    (
        "trainer.precision=banana",
        [
            "error: trainer.precision=banana: must be one of "
            "transformer-engine, transformer-engine-float16, 16-true, "
            "16-mixed, bf16-true, bf16-mixed, 32-true, 64-true "
            "(or 64, 32, 16, bf16)"
        ],
    ),
    ("+trainer.foo=1", ["error: trainer.foo: not a setting of Lightning's Trainer"]),
    (
        "+trainer.max_epoch=3",
        [
            "error: trainer.max_epoch: not a setting of Lightning's Trainer",
            "did you mean trainer.max_epochs?",
        ],
    ),
    (
        "trainer.accelerator=banana",
        ["error: trainer.accelerator=banana: must be one of auto, gpu, cpu, cuda, mps, tpu"],
    ),
]


@pytest.mark.parametrize(("override", "lines"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_train_refuses_a_trainer_setting_before_any_work(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys, override: str, lines: list[str]
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", *FAST, override)
    assert user_error(train, cfg, capsys) == lines
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists()  # the data was not even read


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_train_on_a_gpu_without_one_says_so(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cfg = compose_train(f"data.csv_path={tiny_csv}", *FAST, "trainer.accelerator=gpu")
    assert user_error(train, cfg, capsys) == [
        "error: trainer.accelerator=gpu: torch finds no GPU (CUDA, or Apple's MPS) on this machine",
        "train on the CPU with trainer.accelerator=cpu (or auto: a GPU where there is one)",
    ]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_while_writing_a_checkpoint_names_the_checkpoint(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    save = torch.save

    class FullDisk:
        """A file on a disk that fills up after the first kilobyte, as a write() says it."""

        def __init__(self, handle: Any) -> None:
            self.handle, self.room = handle, 1024

        def write(self, data: bytes) -> int:
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
            return self.handle.write(data)

        def flush(self) -> None:
            self.handle.flush()

    def full_disk(checkpoint: dict[str, Any], handle: Any) -> None:
        save(checkpoint, FullDisk(handle))

    monkeypatch.setattr(checkpoint_io.torch, "save", full_disk)
    cfg = compose_train(f"data.csv_path={tiny_csv}", *FAST, "trainer.max_epochs=2")
    folder = tmp_path / "run" / "checkpoints"
    assert user_error(train, cfg, capsys) == [
        f"error: {folder / 'best.ckpt'}: {os.strerror(errno.ENOSPC)}"
    ]
    assert list(folder.iterdir()) == []  # no temporary, no half a checkpoint
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "failed" and "No space left" in summary["error"]


# ---------------------------------------------------------------- the history itself


def test_the_history_holds_each_epoch_once_and_never_names_a_nan_best() -> None:
    history = MetricHistory()
    history.load_state_dict(
        {"epochs": [{"epoch": e, "val/loss": v} for e, v in enumerate([float("nan"), 0.5, 0.2])]}
    )
    # a checkpoint written before epoch 2 ended: the resumed run trains epoch 2 again
    history.on_train_start(SimpleNamespace(current_epoch=2), None)
    assert [epoch["epoch"] for epoch in history.epochs] == [0, 1]
    assert history.best("val/loss", "min")["epoch"] == 1
    assert history.best("val/loss", "max")["epoch"] == 1
