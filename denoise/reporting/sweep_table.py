"""The sweep report's work: read a sweep's job folders and write ``report.md``, ``report.csv``
(one row per job) and ``report_psnr_vs_amount.png``.

Reading never fails on a job's files: a half-written, foreign or unreadable record becomes a
row that says so, because the report runs while jobs still write (and after some died).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import ListConfig, OmegaConf

from denoise.files.atomic import atomic_file
from denoise.files.outputs import absolute
from denoise.files.reading import read_text
from denoise.runtime.errors import UserError
from denoise.training.summary import DIED, SUMMARY_FILE, read_summary

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
REPORT_PLOT = "report_psnr_vs_amount.png"
AMOUNT_KEY = "data.noise.amount"
ERROR_CHARS = 80  # a failed job's error, shortened to keep the table readable

Row = dict[str, Any]
Series = dict[str, tuple[list[float], list[float]]]


@dataclass(frozen=True)
class Column:
    key: str  # the CSV header and row-dict key
    title: str  # the Markdown header
    fmt: str | None = None  # number format; None for text


COLUMNS = (
    Column("job", "job"),
    Column("overrides", "overrides"),
    Column("status", "status"),
    Column("test_psnr", "test PSNR (dB)", "{:.2f}"),
    Column("test_ssim", "test SSIM", "{:.4f}"),
    Column("test_mse", "test MSE", "{:.6f}"),
    Column("noisy_psnr", "noisy-input PSNR (dB)", "{:.2f}"),
    Column("best_val_psnr", "best val PSNR (dB)", "{:.2f}"),
    Column("epochs_completed", "epochs", "{:d}"),
    Column("wall_time_s", "wall time (s)", "{:.1f}"),
)
TEST_KEYS = {
    "test_psnr": "test/psnr",
    "test_ssim": "test/ssim",
    "test_mse": "test/mse",
    "noisy_psnr": "test/noisy_psnr",
}


@dataclass(frozen=True)
class Job:
    """What one job folder holds; ``summary`` is None when the job wrote none (yet)."""

    folder: Path
    overrides: list[str] = field(default_factory=list)
    amount: float | None = None  # data.noise.amount; the midpoint of a [low, high] range
    amount_is_range: bool = False
    summary: dict[str, Any] | None = None
    summary_problem: str | None = None  # why it is unreadable, e.g. "… is a FIFO (named pipe)"

    @property
    def summary_readable(self) -> bool:
        return self.summary_problem is None


# ---------------------------------------------------------------- reading a sweep folder


def job_folders(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders, in job order (the ``<num>-`` prefix Hydra gives them)."""
    folders = [
        path
        for path in sweep_dir.iterdir()
        # lexists: a summary.json that is no regular file (a FIFO) is a job to report on
        if os.path.lexists(path / ".hydra" / "overrides.yaml")
        or os.path.lexists(path / SUMMARY_FILE)
    ]
    return sorted(folders, key=_job_order)


def _job_order(folder: Path) -> tuple[int, str]:
    number = re.match(r"\d+", folder.name)
    return (int(number.group()) if number else sys.maxsize, folder.name)


def read_job(folder: Path) -> Job:
    """Never raises: a half-written or foreign file becomes a row that says so."""
    summary, problem = _read_summary(folder)
    overrides = _read_overrides(folder / ".hydra" / "overrides.yaml")
    if not overrides and summary and isinstance(summary.get("overrides"), list):
        overrides = [str(item) for item in summary["overrides"]]
    amount, is_range = _read_amount(folder / ".hydra" / "config.yaml")
    return Job(folder, overrides, amount, is_range, summary, problem)


def _read_summary(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The job's summary, and why it could not be read (a missing one counts as readable)."""
    try:
        summary = read_summary(folder)
    except (OSError, ValueError, UserError) as error:
        return None, str(error)
    if summary is None or isinstance(summary, dict):
        return summary, None
    return None, f"{folder / SUMMARY_FILE}: not a valid run record (not a JSON object)"


def _load_yaml(path: Path) -> Any:
    """A job's ``.hydra`` record, read only if it is a regular file (a FIFO would block)
    and parsed safely: a YAML tag (``!!python/object/apply``) is an error, never run."""
    return OmegaConf.create(read_text(path))


def _read_overrides(path: Path) -> list[str]:
    try:
        overrides = _load_yaml(path)
    except Exception:  # absent, no regular file, or not YAML: the summary's copy stands in
        return []
    return [str(item) for item in overrides] if isinstance(overrides, ListConfig) else []


def _read_amount(path: Path) -> tuple[float | None, bool]:
    try:
        amount = OmegaConf.select(_load_yaml(path), AMOUNT_KEY)
    except Exception:  # absent, not YAML, or an interpolation this file cannot resolve
        return None, False
    if isinstance(amount, ListConfig) and len(amount) == 2:
        low, high = (_number(value) for value in amount)
        return (None, False) if low is None or high is None else ((low + high) / 2, True)
    return _number(amount), False


def collect_jobs(sweep_dir: str | Path) -> list[Job]:
    return [read_job(folder) for folder in job_folders(Path(sweep_dir))]


def collect_rows(sweep_dir: str | Path) -> list[Row]:
    """One row dict per job (keys: ``COLUMNS``), in job order."""
    return [job_row(job) for job in collect_jobs(sweep_dir)]


# ---------------------------------------------------------------- pure: jobs -> rows -> text


def job_status(job: Job) -> str:
    """``read_summary`` has already turned a "running" job whose process is gone into died."""
    if not job.summary_readable:
        return "unreadable summary"
    if job.summary is None:
        return "not started"
    status = job.summary.get("status")
    if status == "failed":
        return f"failed: {_shorten(str(job.summary.get('error') or 'no error recorded'))}"
    if status == DIED:
        return f"{DIED} ({_shorten(str(job.summary.get('died_reason') or 'process gone'))})"
    if status in ("completed", "running"):
        return status
    return f"unknown ({status})" if status else "unknown"


def job_row(job: Job) -> Row:
    """Metrics are whatever the summary holds: none yet for a running, failed or unstarted job."""
    summary = job.summary or {}
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    epochs = _number(summary.get("epochs_completed"))
    return {
        "job": job.folder.name,
        "overrides": " ".join(job.overrides),
        "status": job_status(job),
        **{key: _number(test.get(name)) for key, name in TEST_KEYS.items()},
        "best_val_psnr": best_val_psnr(summary.get("val_history")),
        "epochs_completed": None if epochs is None else int(epochs),
        "wall_time_s": _number(summary.get("wall_time_s")),
    }


def best_val_psnr(history: Any) -> float | None:
    """The best epoch's PSNR: the checkpoint is chosen by val/loss, so this may differ from it."""
    values = [_number(epoch.get("val/psnr")) for epoch in history or [] if isinstance(epoch, dict)]
    values = [value for value in values if value is not None]
    return max(values) if values else None


def to_markdown(rows: Sequence[Row]) -> str:
    lines = [
        _markdown_line(column.title for column in COLUMNS),
        _markdown_line("---:" if column.fmt else "---" for column in COLUMNS),
    ]
    lines += [
        _markdown_line(_cell(column, row.get(column.key)) for column in COLUMNS) for row in rows
    ]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row]) -> str:
    """Unformatted values (full precision); empty cells where a job has no metric."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=[column.key for column in COLUMNS], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows({column.key: row.get(column.key) for column in COLUMNS} for row in rows)
    return buffer.getvalue()


def _markdown_line(cells: Any) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(column: Column, value: Any) -> str:
    if value is None:
        return ""
    text = column.fmt.format(value) if column.fmt else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _shorten(text: str) -> str:
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


def _number(value: Any) -> float | None:
    """A finite number, or None for anything else (a foreign summary must not crash a report)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------- pure: jobs -> plot data


def psnr_panels(jobs: Sequence[Job]) -> tuple[list[tuple[str, Series]], str] | None:
    """Test PSNR against the noise amount, one line per combination of the other overrides
    that differ between jobs, plus the noisy input as the baseline; None if nothing to plot."""
    plotted = [(job, job_row(job)) for job in jobs if job.amount is not None]
    plotted = sorted(
        ((job, row) for job, row in plotted if row["test_psnr"] is not None),
        key=lambda pair: pair[0].amount,
    )
    if not plotted:
        return None
    varying = _varying_keys([job for job, _ in plotted]) - {AMOUNT_KEY}
    denoised: Series = {}
    noisy: Series = {}
    for job, row in plotted:
        label = " ".join(o for o in job.overrides if _override_key(o) in varying) or "denoised"
        _append(denoised, label, job.amount, row["test_psnr"])
        _append(noisy, f"noisy input ({label})", job.amount, row["noisy_psnr"])
    xlabel = f"noise amount ({AMOUNT_KEY})"
    if any(job.amount_is_range for job, _ in plotted):
        xlabel += ", midpoint of a [low, high] range"
    return [("test PSNR (dB)", {**denoised, **_merge_identical(noisy)})], xlabel


def _append(series: Series, label: str, x: float, y: float | None) -> None:
    if y is not None:
        xs, ys = series.setdefault(label, ([], []))
        xs.append(x)
        ys.append(y)


def _merge_identical(noisy: Series) -> Series:
    """One 'noisy input' line when every line's noisy input scores alike (the usual case:
    same data, same noise seed), so the legend does not repeat it once per line."""
    curves = {(tuple(xs), tuple(round(y, 2) for y in ys)) for xs, ys in noisy.values()}
    return {"noisy input": next(iter(noisy.values()))} if len(curves) == 1 else noisy


def _varying_keys(jobs: Sequence[Job]) -> set[str]:
    """Override keys whose value is not the same in every job (absent counts as a value)."""
    settings = [dict(_split_override(o) for o in job.overrides) for job in jobs]
    keys = {key for setting in settings for key in setting}
    return {key for key in keys if len({setting.get(key) for setting in settings}) > 1}


def _split_override(override: str) -> tuple[str, str]:
    return _override_key(override), override.partition("=")[2]


def _override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


# ---------------------------------------------------------------- I/O: write and print


def write_report(sweep_dir: str | Path) -> str:
    """Write the three report files into ``sweep_dir``; return the table and notes to print."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such folder")
    jobs = collect_jobs(sweep_dir)
    rows = [job_row(job) for job in jobs]
    markdown = to_markdown(rows)
    for name, text in ((REPORT_MD, markdown), (REPORT_CSV, to_csv(rows))):
        with atomic_file(sweep_dir / name, mode="w") as handle:
            handle.write(text)
    written = [REPORT_MD, REPORT_CSV]
    notes = [] if jobs else [f"No job folders in {sweep_dir}."]
    notes += [f"Unreadable summary: {job.summary_problem}" for job in jobs if job.summary_problem]
    if _write_plot(jobs, sweep_dir / REPORT_PLOT):
        written.append(REPORT_PLOT)
    else:
        notes.append("No completed job with a test PSNR and a noise amount yet: no plot.")
    return "\n".join([markdown, *notes, f"Wrote {', '.join(written)} in {absolute(sweep_dir)}"])


def _write_plot(jobs: Sequence[Job], path: Path) -> bool:
    plot = psnr_panels(jobs)
    if plot is None:
        path.unlink(missing_ok=True)  # a plot from an earlier report would contradict the table
        return False
    from denoise.files.plots import line_panels  # matplotlib only when there is something to draw

    panels, xlabel = plot
    line_panels(panels, xlabel=xlabel, path=path, title="Test PSNR by noise amount")
    return True
