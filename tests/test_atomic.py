"""Nothing half-written: a kill at any moment leaves the old file or the new one, the next
write removes what a dead writer left, and training checkpoints go the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import child_env
from hydra.utils import instantiate

from denoise.files.atomic import atomic_file, remove_stale_temporaries
from denoise.training.checkpoint_io import AtomicCheckpointIO


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_writer_killed_mid_write_leaves_the_old_file_and_the_next_write_cleans_up(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out" / "best.ckpt"
    target.parent.mkdir()
    target.write_bytes(b"old checkpoint")
    elsewhere = tmp_path / "tmpdir"  # TMPDIR on another folder (often another filesystem)
    elsewhere.mkdir()
    script = textwrap.dedent(
        f"""
        import os, signal
        from denoise.files.atomic import atomic_file
        with atomic_file({str(target)!r}) as handle:
            handle.write(b"x" * 1_000_000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script], env={**child_env(), "TMPDIR": str(elsewhere)}, timeout=60
    )

    assert killed.returncode == -9
    assert target.read_bytes() == b"old checkpoint"
    (stale,) = [p for p in target.parent.iterdir() if p != target]
    assert stale.name.startswith(".best.ckpt.") and stale.name.endswith(".tmp")
    assert list(elsewhere.iterdir()) == []  # the temporary lived beside the target

    with atomic_file(target) as handle:
        handle.write(b"new checkpoint")
    assert target.read_bytes() == b"new checkpoint"
    assert list(target.parent.iterdir()) == [target]


def test_only_dead_writers_temporaries_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "cache.npz"
    live = tmp_path / f".cache.npz.{os.getpid()}.abc.tmp"  # this process: still writing
    dead = tmp_path / f".cache.npz.{_dead_pid()}.def.tmp"
    other = tmp_path / f".other.npz.{_dead_pid()}.ghi.tmp"  # another file's: not ours to judge
    for path in (live, dead, other):
        path.write_bytes(b"partial")

    assert remove_stale_temporaries(target) == [dead]
    assert live.exists() and other.exists() and not dead.exists()


def test_an_error_during_the_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "data.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk gone"), atomic_file(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_no_replace_keeps_the_first_file_so_two_runs_leave_one(tmp_path: Path) -> None:
    target = tmp_path / "embedded.csv"
    with atomic_file(target, "w", replace=False) as first:
        first.write("first")
    stamp = target.stat().st_mtime_ns
    with atomic_file(target, "w", replace=False) as second:
        second.write("second")
    assert target.read_text() == "first" and target.stat().st_mtime_ns == stamp
    assert list(tmp_path.iterdir()) == [target]


def test_checkpoints_are_written_atomically_by_the_configured_trainer(
    compose_train, tmp_path: Path, monkeypatch
) -> None:
    trainer = instantiate(compose_train("logger=none").trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)

    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    assert torch.load(target, weights_only=True)["state_dict"]["w"].sum() == 3

    def dies_half_way(checkpoint, handle) -> None:
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a Ctrl-C in the middle of the write

    monkeypatch.setattr("denoise.training.checkpoint_io.torch.save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert torch.load(target, weights_only=True)["state_dict"]["w"].sum() == 3
    assert list(target.parent.iterdir()) == [target]
