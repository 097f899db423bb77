"""How much memory a command may still take, and one check that refuses what would not fit.

A setting such as ``model.net.depth=100`` or ``model.net.base_channels=100000``, or a file far
larger than the machine, would otherwise run into the kernel's OOM killer or a ``MemoryError``
traceback. Commands estimate what they are about to allocate and call
:func:`check_fits` first, which says in one line what the setting would need and what there is.

The memory there is: the least of what Linux says is available (``MemAvailable``), what the
process's memory cgroup has left (a container's limit; v1 or v2) and what its address-space
limit (``ulimit -v``, ``RLIMIT_AS``) leaves of it; on a GPU, the GPU's free memory.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import NamedTuple

from denoise.runtime.errors import UserError

GIGABYTE = 1e9
# Beyond these, a cgroup or an address-space limit means "none" (v1 writes 2**63 rounded
# down to a page; v2 writes "max").
NO_LIMIT = 2**62


class FreeMemory(NamedTuple):
    """Bytes a process may still take, and what limits it, in words for a message."""

    bytes: int
    limited_by: str


def free_memory(device: str = "cpu") -> FreeMemory | None:
    """What there is for new allocations on ``device`` (``cpu``, ``cuda``, ``cuda:1``), the
    tightest limit first; None where nothing can be measured (another system)."""
    if device.startswith("cuda"):
        return _free_gpu_memory(device)
    found = [
        limit
        for limit in (_meminfo_available(), _cgroup_left(), _address_space_left())
        if limit is not None
    ]
    return min(found, key=lambda limit: limit.bytes) if found else None


def check_fits(
    subject: str,
    needed: float,
    what: str,
    detail: str,
    fix: str,
    device: str = "cpu",
    error: type[UserError] = UserError,
) -> None:
    """Refuse, as ``error`` saying ``<subject>: <what> would need about N GB (<detail>), over
    the M GB <limit>``, an allocation of ``needed`` bytes that the memory there is
    (:func:`free_memory`) cannot hold; where nothing can be measured, nothing is refused."""
    free = free_memory(device)
    if free is None or needed <= free.bytes:
        return
    raise error(
        f"{subject}: {what} would need about {gigabytes(needed)} ({detail}), over the "
        f"{gigabytes(free.bytes)} {free.limited_by}",
        fix=fix,
    )


def gigabytes(size: float) -> str:
    """``21.3 GB``, ``0.04 GB``, ``3.1e+28 GB``: three significant digits, any size (a
    Python integer beyond floats' range too)."""
    try:
        return f"{size / GIGABYTE:.3g} GB"
    except OverflowError:
        return f"1e+{len(str(int(size))) - 10} GB"


def _meminfo_available() -> FreeMemory | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return FreeMemory(int(line.split()[1]) * 1024, "this machine has free")
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_left() -> FreeMemory | None:
    """The memory cgroup's limit less its usage (v2: ``memory.max``; v1:
    ``memory.limit_in_bytes``), read where the process's cgroup is mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            names, roots = ("memory.max", "memory.current"), [Path("/sys/fs/cgroup")]
        elif "memory" in controllers.split(","):  # v1
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            roots = [Path("/sys/fs/cgroup/memory")]
        else:
            continue
        for root in roots:
            for folder in (root / path.lstrip("/"), root):  # a container sees its own as root
                left = _limit_less_usage(folder / names[0], folder / names[1])
                if left is not None:
                    return FreeMemory(left, "its memory cgroup (a container's limit) has left")
    return None


def _limit_less_usage(limit_file: Path, usage_file: Path) -> int | None:
    try:
        limit = limit_file.read_text().strip()
        if limit == "max" or int(limit) >= NO_LIMIT:
            return None
        return max(int(limit) - int(usage_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return None


def _address_space_left() -> FreeMemory | None:
    """``RLIMIT_AS`` less the address space the process has mapped already (``VmSize``)."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY or limit >= NO_LIMIT:
        return None
    mapped = 0
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return FreeMemory(max(limit - mapped, 0), "this process may still map (ulimit -v)")


def _free_gpu_memory(device: str) -> FreeMemory | None:
    import torch  # only here: the CPU checks need no torch

    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return FreeMemory(free, f"GPU {device} has free")
