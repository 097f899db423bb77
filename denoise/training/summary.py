"""What a run leaves for people and tools: ``summary.json`` and the closing test table.

A run that is killed outright (SIGKILL, power loss) cannot write ``"status": "failed"``, so a
running run also records who runs it and a heartbeat; ``read_summary`` uses them to tell a
live run from a dead one."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

from denoise.files.atomic import atomic_file
from denoise.files.reading import read_text
from denoise.runtime.distributed import is_rank_zero_process
from denoise.runtime.errors import UserError
from denoise.runtime.machine import process_is_alive

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
TABLE_METRICS = (
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("mse", "MSE", "{:.6f}"),
)
RUNNING = "running"
DIED = "died"  # what readers make of a "running" run whose process is gone
HEARTBEAT_INTERVAL_S = 30.0
# Where the process cannot be checked (another host), a heartbeat this old means it died.
STALE_AFTER_S = 15 * 60

_active: ContextVar[RunSummary | None] = ContextVar("active_run_summary", default=None)


class RunSummary:
    """A JSON file in the run folder, rewritten atomically as the run goes on, so that a
    sweep report can tell running, failed, completed and died jobs apart.

    In a distributed run only rank zero writes it (and beats): the summary of another rank
    (``writes`` false) keeps its fields in memory only."""

    def __init__(
        self, output_dir: str | os.PathLike, heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    ) -> None:
        self.path = Path(output_dir) / SUMMARY_FILE
        self.fields: dict[str, Any] = {}
        self.heartbeat_interval_s = heartbeat_interval_s
        self.writes = is_rank_zero_process()
        self._lock = threading.Lock()  # the heartbeat thread writes too

    def update(self, **fields: Any) -> None:
        # A JSON copy, not the caller's objects: a list the caller keeps appending to must not
        # change while the heartbeat thread writes it.
        snapshot = json.loads(json.dumps(fields, default=str))
        with self._lock:
            self.fields.update(snapshot)
            if not self.writes:
                return
            with atomic_file(self.path, mode="w") as handle:
                json.dump(self.fields, handle, indent=2)

    def beat(self) -> None:
        self.update(heartbeat=_now().isoformat(timespec="seconds"))

    @contextmanager
    def alive(self) -> Iterator[RunSummary]:
        """While the run lives: record its process (see ``process_identity``) and refresh
        ``heartbeat`` from a thread, whatever the run is doing (loading data, an epoch, the
        test); callbacks reach this summary through ``active_summary()``. On a non-zero
        rank: no process record and no heartbeat."""
        if not self.writes:
            token = _active.set(self)
            try:
                yield self
            finally:
                _active.reset(token)
            return
        self.update(process=process_identity())
        self.beat()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._beat_until, args=(stop,), name="summary-heartbeat", daemon=True
        )
        token = _active.set(self)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            _active.reset(token)

    def _beat_until(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_interval_s):
            try:
                self.beat()
            except OSError as error:  # a full disk must not stop the training
                log.warning("No heartbeat written to %s: %s", self.path, error)


def active_summary() -> RunSummary | None:
    """The summary of the run going on in this process, inside ``RunSummary.alive()``."""
    return _active.get()


def read_summary(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The summary a run wrote, or None if it wrote none; a "running" run whose process is
    gone reads as died (see ``judge_liveness``). Anything but a regular file of JSON there
    (a FIFO would block the reader) is a UserError naming it."""
    path = Path(output_dir) / SUMMARY_FILE
    if not os.path.lexists(path):
        return None
    try:
        return judge_liveness(json.loads(read_text(path)))
    except ValueError as error:
        raise UserError(f"{path}: not a valid run record (not JSON: {error})") from None


def judge_liveness(summary: Any, now: datetime | None = None) -> Any:
    """``summary`` with status ``died`` and a ``died_reason`` if it says running but its
    process is gone: checked directly on the host that ran it, by the heartbeat's age
    elsewhere. Summaries without a recorded process (older ones) are left as they are."""
    if not isinstance(summary, dict) or summary.get("status") != RUNNING:
        return summary
    process = summary.get("process")
    pid = process.get("pid") if isinstance(process, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:  # kill(0) hits a group
        return summary
    now = now or _now()
    beat = _parse_time(summary.get("heartbeat"))
    if _checkable_here(process):
        why = _why_gone(pid, process.get("start_ticks"))
    elif beat is not None and (now - beat).total_seconds() > STALE_AFTER_S:
        why = f"pid {pid} on {process.get('host')} silent for over {STALE_AFTER_S // 60} min"
    else:
        why = None
    if why is None:
        return summary
    since = f"no heartbeat since {_clock(beat, now)}" if beat else "no heartbeat recorded"
    return {**summary, "status": DIED, "died_reason": f"{since}, {why}"}


def process_identity() -> dict[str, Any]:
    """What tells this process apart from any other, even once its pid is reused: pid and
    host, and on Linux its start time (clock ticks after boot), the boot and the pid
    namespace (a container on the same host sees other pids)."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    identity = {
        "pid": pid,
        "host": socket.gethostname(),
        "start_ticks": stat[1] if stat else None,
        **_pid_scope(),
    }
    return {key: value for key, value in identity.items() if value is not None}


def _pid_scope() -> dict[str, str | None]:
    """Where a pid means the same process: this boot of this kernel, this pid namespace."""
    try:
        boot_id: str | None = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = None
    try:
        namespace: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return {"boot_id": boot_id, "pid_namespace": namespace}


def _checkable_here(process: dict[str, Any]) -> bool:
    """Whether the recorded pid can be looked up from here: same host, same boot, same pid
    namespace (where both sides know them), and a system with ``kill(pid, 0)``."""
    if os.name != "posix" or process.get("host") != socket.gethostname():
        return False
    here = _pid_scope()
    return all(
        process.get(key) is None or here[key] is None or process.get(key) == here[key]
        for key in here
    )


def _why_gone(pid: int, start_ticks: Any) -> str | None:
    """None while process ``pid`` lives (and, where recorded, started when it did)."""
    if not process_is_alive(pid):
        return f"pid {pid} gone"
    stat = _proc_stat(pid)
    if stat is None:
        return None  # no /proc to look further: alive
    state, ticks = stat
    if state in ("Z", "X"):
        return f"pid {pid} gone"  # killed, not yet reaped by its parent
    if isinstance(start_ticks, int) and ticks != start_ticks:
        return f"pid {pid} now another process"
    return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State and start time (field 22, clock ticks after boot) of ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        fields = text[text.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _now() -> datetime:
    return datetime.now().astimezone()


def _parse_time(value: Any) -> datetime | None:
    """An ISO time as local time; None for anything else (a foreign summary must not crash)."""
    try:
        return datetime.fromisoformat(value).astimezone()
    except (TypeError, ValueError, OverflowError):
        return None


def _clock(moment: datetime, now: datetime) -> str:
    """``16:05`` today (local time), with the date on other days."""
    local = moment.astimezone()
    same_day = local.date() == now.astimezone().date()
    return f"{local:%H:%M}" if same_day else f"{local:%Y-%m-%d %H:%M}"


def format_test_table(metrics: dict[str, float], stage: str = "test") -> str:
    """Model against its noisy input, one row each: PSNR, SSIM and MSE."""
    header = f"{'':<14}" + "".join(f"{title:>10}" for _, title, _ in TABLE_METRICS)
    rows = [header]
    for label, prefix in (("noisy input", f"{stage}/noisy_"), ("denoised", f"{stage}/")):
        cells = [
            f"{fmt.format(metrics[prefix + key]):>10}" if prefix + key in metrics else f"{'-':>10}"
            for key, _, fmt in TABLE_METRICS
        ]
        rows.append(f"{label:<14}" + "".join(cells))
    return "\n".join(rows)
