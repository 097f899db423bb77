"""One line that says what a run ran on, for summaries, model cards and benchmarks."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cpu_name() -> str:
    """The CPU's model name (Linux reads /proc/cpuinfo; elsewhere platform's guess)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine() -> str:
    """E.g. ``2 cores of Intel(R) Xeon(R) ...; no GPU; torch 2.13.0``."""
    import torch  # not at import: what only needs process_is_alive starts at once

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cores} cores of {cpu_name()}; {gpu}; torch {torch.__version__}"


def bf16_hardware() -> tuple[bool, str]:
    """Whether this CPU computes bf16 dot products in hardware (then oneDNN's bf16
    convolutions beat fp32), and the instruction set that says so. oneDNN also runs bf16 on
    plain AVX2 or AVX-512, by conversion, several times slower than fp32 (10x measured on an
    AVX2 EPYC): only AMX or AVX512-BF16 on x86, or Arm's BF16 extension, count."""
    import torch  # not at import: what only needs process_is_alive starts at once

    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        if torch.cpu._is_amx_tile_supported():
            return True, "AMX"
        if torch.cpu._is_avx512_bf16_supported():
            return True, "AVX512-BF16"
        return False, f"{capability}, without AVX512-BF16 or AMX"
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # on Arm: the BF16 extension
        return True, f"{platform.machine()} BF16"
    return False, f"{platform.machine()} {capability}, without bf16 instructions"


def bf16_is_fast(device: torch.device | None = None) -> tuple[bool, str]:
    """Whether bf16 beats fp32 on ``device`` (default: the GPU if there is one, else the
    CPU), and why: a GPU, or a CPU with bf16 hardware (:func:`bf16_hardware`)."""
    import torch  # not at import: what only needs process_is_alive starts at once

    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return True, f"GPU {torch.cuda.get_device_name(device)}"
    native, isa = bf16_hardware()
    if native:
        return True, f"this CPU computes bf16 in hardware ({isa})"
    return False, f"this CPU has no bf16 hardware ({isa}): bf16 would be slower"


def default_precision() -> tuple[str, str]:
    """Lightning's precision for training here, and why: bf16 mixed precision where bf16 is
    fast (a GPU, a CPU with bf16 hardware), full fp32 elsewhere."""
    fast, why = bf16_is_fast()
    return ("bf16-mixed" if fast else "32-true"), why


def precision_note(chosen: str) -> str:
    """The line a run prints about its precision: the hardware's default and why, or that
    the setting overrode it."""
    default, why = default_precision()
    if str(chosen) == default:
        return f"Precision {chosen}: {why}"
    return f"Precision {chosen}, as set (the default here would be {default}: {why})"


def process_is_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 only asks)."""
    if pid <= 0:  # kill(0) or kill(-n) would ask a whole process group
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no process has such a pid
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True
