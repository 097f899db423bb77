"""A command launched as a person launches it, in a child process: timed from launch to exit,
with its own peak resident memory; or a server (the demo) timed from launch to a page served.

``python -m denoise.benchmarks.launch <module> [args ...]`` runs ``python -m <module> [args
...]`` and then writes its high-water mark (VmHWM) to stderr; the parent's rusage of children
would include the pages a forked child inherits from the (large) bench process. This module
imports only the standard library, so that it adds nothing to the memory it reports."""

from __future__ import annotations

import math
import re
import runpy
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PEAK = "PEAK_RSS_KB"
ADDRESS = re.compile(r"http://\S+:\d+")  # what a server prints once it serves


@dataclass(frozen=True)
class ChildRun:
    """``python -m <command>`` run in a child process, with the bench's environment."""

    completed: subprocess.CompletedProcess
    seconds: float  # wall time from launch to exit: what a person waits for
    peak_gib: float  # its own peak resident memory

    @property
    def failure(self) -> str:
        """Empty where it succeeded; else its exit status and its error line (else its last
        line of output)."""
        if self.completed.returncode == 0:
            return ""
        output = f"{self.completed.stdout}\n{self.completed.stderr}".splitlines()
        lines = [line for line in output if line.strip() and not line.startswith(PEAK)]
        said = next(
            (line for line in lines if line.startswith("error:")), lines[-1] if lines else ""
        )
        return f"failed (exit {self.completed.returncode}): {said}"


def run_child(command: str, arguments: list[str]) -> ChildRun:
    """Run ``python -m <command> <arguments>`` as a child process and time it."""
    child = [sys.executable, "-m", __spec__.name, command, *arguments]
    started = time.perf_counter()
    completed = subprocess.run(child, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    kilobytes = re.search(rf"{PEAK} (\d+)", completed.stderr)
    peak = int(kilobytes.group(1)) / 1024**2 if kilobytes else float("nan")
    return ChildRun(completed, seconds, peak)


def run_until_served(command: str, arguments: list[str], timeout: float = 300) -> ChildRun:
    """Run the server ``python -m <command> <arguments>`` until the address it prints answers
    (what a person waits for before the page opens), time that, then stop it. One that ends
    first fails with its own error line; one that hangs is stopped after ``timeout``."""
    child = [sys.executable, "-m", command, *arguments]
    started = time.perf_counter()
    server = subprocess.Popen(child, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(timeout, server.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in server.stdout:  # type: ignore[union-attr]
            lines.append(line)
            address = ADDRESS.search(line)
            if address:
                with urllib.request.urlopen(address.group(0), timeout=timeout) as page:
                    page.read()
                seconds = time.perf_counter() - started
                return ChildRun(
                    subprocess.CompletedProcess(child, 0, "".join(lines)), seconds, math.nan
                )
        server.wait()
        status = server.returncode or 1  # ended (or stopped) without serving: a failure
        return ChildRun(
            subprocess.CompletedProcess(child, status, "".join(lines), ""), math.nan, math.nan
        )
    finally:
        watchdog.cancel()
        server.terminate()
        server.wait()
        server.stdout.close()  # type: ignore[union-attr]


def peak_rss(command: str, overrides: list[str]) -> float:
    """Peak resident memory (GiB) of ``python -m <command> <overrides>``; a failure raises."""
    run = run_child(command, overrides)
    run.completed.check_returncode()
    return run.peak_gib


def run_and_report(module: str, arguments: list[str]) -> None:
    """Run ``module`` as ``python -m`` runs it, then report this process's peak memory."""
    sys.argv = [module, *arguments]
    try:
        runpy.run_module(module, run_name="__main__")
    finally:
        status = Path("/proc/self/status").read_text()
        print(PEAK, re.search(r"VmHWM:\s+(\d+)", status).group(1), file=sys.stderr)


if __name__ == "__main__":
    run_and_report(sys.argv[1], sys.argv[2:])
