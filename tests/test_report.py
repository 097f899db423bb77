"""Sweep report: fake sweep folders -> table, CSV, plot; the CLI and the Hydra callback."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import python_module, run_command
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from denoise.reporting.callback import SweepReport
from denoise.reporting.sweep_table import (
    REPORT_CSV,
    REPORT_MD,
    REPORT_PLOT,
    collect_jobs,
    collect_rows,
    psnr_panels,
    to_markdown,
    write_report,
)
from denoise.training.summary import process_identity

COMMON = ["trainer.max_epochs=3", "data.csv_path=/data/fer.csv"]


def completed(psnr: float, noisy: float, val_psnrs: list[float]) -> dict[str, Any]:
    """A summary as denoise.train leaves it after a finished run."""
    history = [{"epoch": epoch, "val/psnr": value} for epoch, value in enumerate(val_psnrs)]
    return {
        "status": "completed",
        "best_epoch": history[-1],
        "val_history": history,
        "epochs_completed": len(history),
        "test": {
            "test/psnr": psnr,
            "test/ssim": 0.9,
            "test/mse": 10 ** (-psnr / 10),
            "test/noisy_psnr": noisy,
        },
        "wall_time_s": 12.5,
    }


def make_job(
    sweep: Path,
    name: str,
    amount: Any,
    summary: dict[str, Any] | str | None,
    extra: tuple[str, ...] = (),
) -> Path:
    """A job folder as Hydra and denoise.train write it; ``summary`` may be raw text."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"data.noise.amount={amount}", *extra, *COMMON]
    (job / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    config = {"data": {"noise": {"amount": amount, "seed": 1234}}, "seed": 42}
    (job / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    if summary is not None:
        text = summary if isinstance(summary, str) else json.dumps(summary)
        (job / "summary.json").write_text(text)
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Three completed jobs, then one of each way a job can be unfinished; numbered past 9
    so that job order is numeric, not alphabetical."""
    sweep = tmp_path / "sweep"
    make_job(sweep, "0-data.noise.amount=0.02", 0.02, completed(30.0, 25.0, [28.0, 31.5, 30.2]))
    make_job(sweep, "1-data.noise.amount=0.1", 0.1, completed(26.0, 18.0, [25.0, 26.5]))
    make_job(sweep, "2-data.noise.amount=0.3", 0.3, completed(20.0, 13.0, [19.5]))
    failed = {"status": "failed", "error": "CSVFormatError: row 4: bad\nTraceback ...\n"}
    make_job(sweep, "3-data.noise.amount=0.5", 0.5, {**failed, "wall_time_s": 1.5})
    make_job(sweep, "4-data.noise.amount=0.6", 0.6, {"status": "running"})
    make_job(sweep, "5-data.noise.amount=0.7", 0.7, None)
    make_job(sweep, "10-data.noise.amount=0.8", 0.8, '{"status": "compl')
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


STATUSES = [
    "completed",
    "completed",
    "completed",
    "failed: CSVFormatError: row 4: bad",
    "running",
    "not started",
    "unreadable summary",
]
METRICS = ["test_psnr", "test_ssim", "test_mse", "noisy_psnr", "best_val_psnr", "epochs_completed"]


def test_rows_one_per_job_in_job_order_with_status_and_metrics(sweep: Path) -> None:
    rows = collect_rows(sweep)

    assert [row["job"].split("-")[0] for row in rows] == ["0", "1", "2", "3", "4", "5", "10"]
    assert [row["status"] for row in rows] == STATUSES
    assert rows[0]["overrides"] == "data.noise.amount=0.02 " + " ".join(COMMON)
    assert [row["best_val_psnr"] for row in rows[:3]] == [31.5, 26.5, 19.5]  # max, not last
    assert [row["test_psnr"] for row in rows[:3]] == [30.0, 26.0, 20.0]
    assert [row["noisy_psnr"] for row in rows[:3]] == [25.0, 18.0, 13.0]
    assert rows[0]["test_mse"] == pytest.approx(1e-3)
    assert rows[0]["epochs_completed"] == 3 and rows[0]["wall_time_s"] == 12.5
    for row in rows[3:]:
        assert all(row[key] is None for key in METRICS), row
    assert rows[3]["wall_time_s"] == 1.5  # a failed job still says when it gave up


def test_a_running_job_whose_process_is_gone_shows_as_died(tmp_path: Path) -> None:
    now = datetime.now().astimezone()
    history = completed(0.0, 0.0, [21.0, 23.5])["val_history"]
    gone = {
        "status": "running",
        "process": {"pid": 4321, "host": "gpu-2"},  # another host: judged by the heartbeat
        "heartbeat": (now - timedelta(minutes=20)).isoformat(),
        "val_history": history,
        "epochs_completed": 2,
    }
    alive = {"status": "running", "process": process_identity(), "heartbeat": now.isoformat()}
    make_job(tmp_path, "0-gone", 0.1, gone)
    make_job(tmp_path, "1-alive", 0.1, alive)
    make_job(tmp_path, "2-before-heartbeats", 0.1, {"status": "running"})

    rows = collect_rows(tmp_path)

    died = r"died \(no heartbeat since (\d{4}-\d\d-\d\d )?\d\d:\d\d, pid 4321 on gpu-2 silent "
    assert re.fullmatch(died + r"for over 15 min\)", rows[0]["status"]), rows[0]["status"]
    assert rows[0]["epochs_completed"] == 2 and rows[0]["best_val_psnr"] == 23.5
    assert [row["status"] for row in rows[1:]] == ["running", "running"]
    assert f"| {rows[0]['status']} |" in to_markdown(rows)


def test_long_errors_are_cut_to_one_short_line(tmp_path: Path) -> None:
    error = "RuntimeError: " + "x" * 300 + "\nsecond line"
    make_job(tmp_path, "0-a", 0.1, {"status": "failed", "error": error})
    (status,) = (row["status"] for row in collect_rows(tmp_path))
    assert status.startswith("failed: RuntimeError: xxx") and status.endswith("…")
    assert len(status) < 100 and "second" not in status


def test_markdown_table_formats_numbers_and_leaves_missing_metrics_empty(sweep: Path) -> None:
    lines = to_markdown(collect_rows(sweep)).splitlines()

    assert len(lines) == 2 + 7
    assert lines[0].startswith("| job | overrides | status | test PSNR (dB) |")
    assert "| 30.00 | 0.9000 | 0.001000 | 25.00 | 31.50 | 3 | 12.5 |" in lines[2]
    assert lines[5].endswith("| failed: CSVFormatError: row 4: bad |  |  |  |  |  |  | 1.5 |")
    assert lines[6].endswith("| running |  |  |  |  |  |  |  |")


def test_markdown_escapes_pipes_in_cells() -> None:
    row = {"job": "0-a", "overrides": "x=a|b", "status": "failed: A|B"}
    assert "x=a\\|b | failed: A\\|B |" in to_markdown([row])


def test_report_writes_markdown_csv_and_plot(sweep: Path) -> None:
    printed = write_report(sweep)

    rows = collect_rows(sweep)
    assert (sweep / REPORT_MD).read_text() == to_markdown(rows)
    assert to_markdown(rows) in printed
    assert (sweep / REPORT_PLOT).read_bytes().startswith(b"\x89PNG")
    frame = pd.read_csv(sweep / REPORT_CSV)
    expected = pd.DataFrame(rows)
    assert list(frame.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_plot_draws_psnr_against_amount_with_the_noisy_input_once(sweep: Path) -> None:
    (panels, xlabel) = psnr_panels(collect_jobs(sweep))
    ((ylabel, series),) = panels
    assert ylabel == "test PSNR (dB)" and "data.noise.amount" in xlabel
    assert series == {
        "denoised": ([0.02, 0.1, 0.3], [30.0, 26.0, 20.0]),
        "noisy input": ([0.02, 0.1, 0.3], [25.0, 18.0, 13.0]),
    }


def test_plot_draws_one_line_per_combination_of_the_other_overrides(tmp_path: Path) -> None:
    for number, (amount, dropout) in enumerate([(0.3, 0.0), (0.1, 0.0), (0.1, 0.2), (0.3, 0.2)]):
        summary = completed(20 + number, 15.0 + amount, [20.0])
        make_job(tmp_path, f"{number}-job", amount, summary, (f"model.net.dropout={dropout}",))

    (((_, series),), _) = psnr_panels(collect_jobs(tmp_path))

    assert series["model.net.dropout=0.0"] == ([0.1, 0.3], [21.0, 20.0])  # sorted by amount
    assert series["model.net.dropout=0.2"] == ([0.1, 0.3], [22.0, 23.0])
    assert series["noisy input"] == ([0.1, 0.3], [15.1, 15.3])


def test_a_range_amount_is_plotted_at_its_midpoint(tmp_path: Path) -> None:
    make_job(tmp_path, "0-range", [0.0, 0.4], completed(25.0, 15.0, [24.0]))
    (((_, series),), xlabel) = psnr_panels(collect_jobs(tmp_path))
    assert series["denoised"] == ([0.2], [25.0]) and "midpoint" in xlabel


def test_no_completed_job_writes_the_table_and_skips_the_plot(tmp_path: Path) -> None:
    make_job(tmp_path, "0-a", 0.1, {"status": "running"})
    (tmp_path / REPORT_PLOT).write_bytes(b"an earlier plot")

    printed = write_report(tmp_path)

    assert "no plot" in printed and "| running |" in (tmp_path / REPORT_MD).read_text()
    assert not (tmp_path / REPORT_PLOT).exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_command(python_module("denoise.report", *args), cwd)


def test_cli_writes_the_report_and_prints_the_table(sweep: Path, tmp_path: Path) -> None:
    result = _cli("sweep", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Reporting on the sweep in {sweep.resolve()}\n")
    assert f"in {sweep.resolve()}" in result.stdout.splitlines()[-1]
    assert (sweep / REPORT_MD).read_text() in result.stdout
    assert (sweep / REPORT_CSV).exists() and (sweep / REPORT_PLOT).exists()


@pytest.mark.parametrize("args", [("missing",), (), ("sweep", "extra")])
def test_cli_exits_2_with_usage_on_a_missing_folder_or_wrong_arguments(
    sweep: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: python -m denoise.report SWEEP_DIR" in result.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_cli_help_prints_the_usage_and_what_it_writes(tmp_path: Path, flag: str) -> None:
    result = _cli(flag, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m denoise.report SWEEP_DIR")
    assert REPORT_MD in result.stdout and "no such folder" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_train_run_registers_the_callback(compose_config: Callable[..., DictConfig]) -> None:
    callbacks = compose_config("train").hydra.callbacks
    assert isinstance(instantiate(callbacks.sweep_report), SweepReport)


def test_callback_writes_the_report_of_the_sweep_dir(sweep: Path, capsys) -> None:
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / REPORT_MD).exists() and (sweep / REPORT_PLOT).exists()
    assert "| running |" in capsys.readouterr().out


def test_callback_anchors_a_relative_sweep_dir_at_the_launch_folder(
    sweep: Path, tmp_path: Path
) -> None:
    config = {"hydra": {"sweep": {"dir": "sweep"}, "runtime": {"cwd": str(tmp_path)}}}
    SweepReport().on_multirun_end(OmegaConf.create(config))
    assert (sweep / REPORT_MD).exists()


def test_callback_never_raises(tmp_path: Path, caplog) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for config in (
        {"hydra": {"sweep": {"dir": str(empty)}}},
        {"hydra": {"sweep": {"dir": str(tmp_path / "nowhere")}}},
        {},
    ):
        SweepReport().on_multirun_end(OmegaConf.create(config))
    assert "| job |" in (empty / REPORT_MD).read_text()
    assert "nowhere: no such folder" in caplog.text and "no hydra.sweep.dir" in caplog.text


@pytest.mark.parametrize(
    ("mode", "status", "reported"),
    [
        ("MULTIRUN", JobStatus.FAILED, True),
        ("MULTIRUN", JobStatus.COMPLETED, False),
        ("RUN", JobStatus.FAILED, False),
    ],
)
def test_callback_reports_when_a_job_fails_because_the_sweep_stops_there(
    sweep: Path, mode: str, status: JobStatus, reported: bool
) -> None:
    config = OmegaConf.create({"hydra": {"mode": mode, "sweep": {"dir": str(sweep)}}})
    SweepReport().on_job_end(config, JobReturn(status=status))
    assert (sweep / REPORT_MD).exists() == reported
