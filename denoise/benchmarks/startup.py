"""Start-up, launch to exit in child processes: each command's ``--help``, and ``predict`` on
a picture of one tile in one pass (so the rest of its time is start-up); and the demo, launch
to a served page."""

from __future__ import annotations

import math
import pkgutil
import socket
import tempfile
from pathlib import Path

from denoise.benchmarks.launch import run_child, run_until_served
from denoise.benchmarks.photos import GREY, noisy_photo, photo_label, saved_photo
from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, within

START_SIDE = 64  # the picture predict's start-up restores: one tile, so the rest is start-up


def command_names() -> list[str]:
    """Every command: each top-level module of the package is one (``denoise/<command>.py``)."""
    import denoise

    return [module.name for module in pkgutil.iter_modules(denoise.__path__) if not module.ispkg]


def startup_rows(targets: Targets) -> list[Row]:
    """Each command's ``--help``, then predict on one tile with one view, launch to exit."""
    rows = []
    for name in command_names():
        run = run_child(f"denoise.{name}", ["--help"])
        value = math.nan if run.failure else run.seconds
        what = f"python -m denoise.{name} --help"
        target = within(value, targets.help_seconds, "s")
        rows.append(Row("start-up", what, value, "s", run.failure, target))
    with tempfile.TemporaryDirectory() as folder:
        picture = noisy_photo(START_SIDE**2 / 1e6)
        source = saved_photo(picture, Path(folder) / "small.png")
        target = Path(folder) / "restored.png"
        arguments = [f"input={source}", f"output={target}", "self_ensemble=1"]
        run = run_child("denoise.predict", arguments)
    value = math.nan if run.failure else run.seconds
    what = f"python -m denoise.predict, launch to exit: {photo_label(picture, GREY)}, one view"
    target = within(value, targets.predict_start_seconds, "s")
    rows.append(Row("start-up", what, value, "s", run.failure, target))
    return rows


def free_port() -> int:
    """A port nothing on this machine listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_start_row(targets: Targets) -> Row:
    """``python -m denoise.demo``, launch to its page served (the models load after)."""
    run = run_until_served("denoise.demo", [f"port={free_port()}"])
    value = math.nan if run.failure else run.seconds
    what = "python -m denoise.demo, launch to a served page"
    return Row(
        "start-up", what, value, "s", run.failure, within(value, targets.demo_start_seconds, "s")
    )
