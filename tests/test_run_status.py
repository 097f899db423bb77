"""A run's liveness in summary.json: heartbeat, per-epoch history, died when killed, resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
from conftest import TINY_MODEL, killed_when, wait_until

from denoise import report
from denoise.training.run import train
from denoise.training.summary import (
    SUMMARY_FILE,
    RunSummary,
    active_summary,
    judge_liveness,
    process_identity,
    read_summary,
)

FAST = [
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "logger=none",
    "test=false",
]
NOW = datetime(2026, 11, 25, 16, 30).astimezone()  # local time, as readers show it
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def running(process: dict[str, Any], beat: datetime | None = None) -> dict[str, Any]:
    """A summary as a live run leaves it between two heartbeats."""
    beat = beat or datetime.now().astimezone()
    return {"status": "running", "process": process, "heartbeat": beat.isoformat()}


# ---------------------------------------------------------------- a real run, killed


@pytest.mark.slow
def test_a_run_killed_with_sigkill_reads_as_died_with_the_epochs_it_completed(
    tiny_csv: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "sweep" / "0-killed"
    command = [
        sys.executable,
        "-m",
        "denoise.train",
        f"hydra.run.dir={run_dir}",
        f"data.csv_path={tiny_csv}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1000",  # it never ends by itself
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        *FAST,
        *TINY_MODEL,
    ]

    def one_epoch_recorded() -> bool:
        path = run_dir / SUMMARY_FILE
        return path.exists() and json.loads(path.read_text()).get("epochs_completed", 0) > 0

    with killed_when(command, tmp_path, one_epoch_recorded, 90, "epoch in summary.json") as process:
        assert read_summary(run_dir)["status"] == "running"  # alive: not judged dead

    summary = read_summary(run_dir)
    assert summary["status"] == "died"
    assert summary["died_reason"].startswith("no heartbeat since ")
    assert summary["died_reason"].endswith(f", pid {process.pid} gone")
    assert summary["process"]["host"] == socket.gethostname()
    assert summary["epochs_completed"] >= 1
    assert [epoch["epoch"] for epoch in summary["val_history"]][:1] == [0]
    assert "val/psnr" in summary["val_history"][0]

    assert report.main([str(tmp_path / "sweep")]) == 0
    status = f"| died ({summary['died_reason']}) |"
    (row,) = (line for line in capsys.readouterr().out.splitlines() if "| 0-killed |" in line)
    assert status in row and "trainer.max_epochs=1000" in row
    assert row in (tmp_path / "sweep" / report.REPORT_MD).read_text()


# ---------------------------------------------------------------- judging a summary


def test_a_live_run_records_its_process_and_beats_until_it_ends(tmp_path: Path) -> None:
    summary = RunSummary(tmp_path, heartbeat_interval_s=0.01)
    beats: list[str] = []
    original_beat = summary.beat

    def counted_beat() -> None:
        original_beat()
        beats.append(summary.fields["heartbeat"])

    summary.beat = counted_beat  # type: ignore[method-assign]
    summary.update(status="running")

    with summary.alive():
        assert active_summary() is summary
        wait_until(lambda: len(beats) >= 3, timeout=10, what="third heartbeat")
        written = read_summary(tmp_path)
        assert written["status"] == "running" and "died_reason" not in written

    assert active_summary() is None
    count = len(beats)
    time.sleep(0.1)
    assert len(beats) == count  # the thread stopped with the run
    assert written["process"]["pid"] == os.getpid()
    assert written["process"]["host"] == socket.gethostname()
    assert datetime.fromisoformat(written["heartbeat"]).tzinfo is not None


def test_a_live_pid_on_this_host_reads_as_running_however_old_its_heartbeat() -> None:
    summary = running(process_identity(), beat=NOW - timedelta(days=3))
    assert judge_liveness(summary, now=NOW) is summary


@linux_only
def test_a_pid_reused_by_another_process_reads_as_died() -> None:
    identity = process_identity()
    summary = running({**identity, "start_ticks": identity["start_ticks"] + 1}, beat=NOW)
    judged = judge_liveness(summary, now=NOW)
    assert judged["status"] == "died"
    reason = f"no heartbeat since 16:30, pid {os.getpid()} now another process"
    assert judged["died_reason"] == reason


@linux_only
def test_a_killed_process_reads_as_died_before_and_after_it_is_reaped() -> None:
    child = subprocess.Popen(["sleep", "60"])
    summary = running({"pid": child.pid, "host": socket.gethostname()}, beat=NOW)
    try:
        assert judge_liveness(summary, now=NOW)["status"] == "running"
        child.kill()
        stat = Path(f"/proc/{child.pid}/stat")
        wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 10, "zombie")
        assert judge_liveness(summary, now=NOW)["died_reason"].endswith(f"pid {child.pid} gone")
    finally:
        child.kill()
        child.wait()
    reaped = judge_liveness(summary, now=NOW)
    assert reaped["died_reason"] == f"no heartbeat since 16:30, pid {child.pid} gone"


ELSEWHERE = {"pid": 4321, "host": "gpu-2.example"}
REBOOTED = {"pid": 4321, "host": socket.gethostname(), "boot_id": "a boot before this one"}


@pytest.mark.parametrize(
    ("process", "age", "reason"),
    [
        (ELSEWHERE, timedelta(minutes=2), None),
        (
            ELSEWHERE,
            timedelta(minutes=25),
            "no heartbeat since 16:05, pid 4321 on gpu-2.example silent for over 15 min",
        ),
        (
            ELSEWHERE,
            timedelta(days=1),
            "no heartbeat since 2026-11-24 16:30, pid 4321 on gpu-2.example silent for over 15 min",
        ),
        (REBOOTED, timedelta(minutes=2), None),  # its pid means nothing here: trust the heartbeat
        (
            REBOOTED,
            timedelta(minutes=16),
            f"no heartbeat since 16:14, pid 4321 on {socket.gethostname()} silent for over 15 min",
        ),
    ],
)
def test_a_run_elsewhere_reads_as_died_once_its_heartbeat_is_old(
    process: dict[str, Any], age: timedelta, reason: str | None
) -> None:
    judged = judge_liveness(running(process, beat=NOW - age), now=NOW)
    assert judged["status"] == ("running" if reason is None else "died")
    assert judged.get("died_reason") == reason


@pytest.mark.parametrize(
    "summary",
    [
        {"status": "running"},  # written before runs recorded their process
        {"status": "running", "heartbeat": "2020-01-01T00:00:00+00:00"},
        {"status": "running", "process": {"pid": 0, "host": "x"}},
        {"status": "completed", "process": ELSEWHERE, "heartbeat": "2020-01-01T00:00:00+00:00"},
        ["not", "a", "summary"],
    ],
)
def test_summaries_without_a_process_to_check_read_as_before(summary: Any) -> None:
    assert judge_liveness(summary, now=NOW) == summary


def test_read_summary_judges_what_it_reads(tmp_path: Path) -> None:
    stale = running(ELSEWHERE, beat=datetime.now().astimezone() - timedelta(hours=1))
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(stale))
    assert read_summary(tmp_path)["status"] == "died"
    assert json.loads((tmp_path / SUMMARY_FILE).read_text()) == stale  # the file stays as written


# ---------------------------------------------------------------- resume


class SummaryAtEpochStart(L.Callback):
    """Added through the config, as a user's callback is: what summary.json says as each
    training epoch starts."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen.append(read_summary(trainer.default_root_dir))


@pytest.mark.slow
def test_a_resumed_run_continues_the_history_of_its_checkpoint(
    compose_train, tiny_csv: Path, tmp_path: Path
) -> None:
    train(
        compose_train(
            f"data.csv_path={tiny_csv}",
            *TINY_MODEL,
            *FAST,
            "trainer.max_epochs=1",
            output_dir=tmp_path / "first",
        )
    )
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    SummaryAtEpochStart.seen.clear()
    resumed = compose_train(
        f"data.csv_path={tiny_csv}",
        *TINY_MODEL,
        *FAST,
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
        f"+callbacks.probe._target_={__name__}.{SummaryAtEpochStart.__name__}",
        output_dir=tmp_path / "resumed",
    )

    train(resumed)

    assert read_summary(tmp_path / "first")["resumed_from"] is None
    (at_start,) = SummaryAtEpochStart.seen  # epoch 1 only: epoch 0 came with the checkpoint
    assert at_start["status"] == "running" and at_start["process"]["pid"] == os.getpid()
    assert [epoch["epoch"] for epoch in at_start["val_history"]] == [0]
    assert at_start["epochs_completed"] == 1
    assert at_start["resumed_from"] == str(last)
    final = read_summary(tmp_path / "resumed")
    assert final["status"] == "completed" and final["resumed_from"] == str(last)
    assert [epoch["epoch"] for epoch in final["val_history"]] == [0, 1]
    assert final["epochs_completed"] == 2
