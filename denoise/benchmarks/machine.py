"""What the figures were measured on: the processor, torch's threads and CPU capability, bf16
hardware, and what oneDNN itself dispatches to.

``python -m denoise.benchmarks.machine`` runs one fp32 and one bf16 convolution with oneDNN's
verbose log on (its log goes to stdout from C++, so :func:`onednn_isa` reads it from this
module run as a child process)."""

from __future__ import annotations

import subprocess
import sys

import torch

from denoise.benchmarks.table import Row
from denoise.runtime.machine import bf16_hardware, cpu_name, default_precision


def onednn_isa() -> dict[str, str]:
    """What oneDNN itself reports: the instruction set it dispatches to, and the convolution
    kernel it picks for a fp32 and a bf16 layer, e.g. ``brg_conv_fwd:avx2`` or
    ``brg_conv_fwd:avx512_core_amx``."""
    try:
        output = subprocess.run(
            [sys.executable, "-m", __spec__.name],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return {"isa": f"unknown ({error})"}
    found = {"isa": "unknown"}
    for line in output.splitlines():
        fields = line.split(",")
        if ",info,cpu,isa:" in line:
            found["isa"] = line.split("isa:", 1)[1].strip()
        elif len(fields) > 8 and fields[3] == "exec" and fields[5] == "convolution":
            dtype = "bf16" if "src:bf16" in fields[8] else "fp32"
            found.setdefault(f"{dtype} convolution kernel", fields[6])
    return found


def machine_rows() -> list[Row]:
    """What the figures were measured on, and what decides the fast precision."""
    native, isa = bf16_hardware()
    rows = [
        Row("machine", "processor", cpu_name(), ""),
        Row("machine", "torch threads", torch.get_num_threads(), ""),
        Row("machine", "ATen CPU capability", torch.backends.cpu.get_cpu_capability(), ""),
        Row("machine", "bf16 hardware", f"{'yes' if native else 'no'} ({isa})", ""),
        Row("machine", "training precision by default", default_precision()[0], ""),
    ]
    rows += [Row("machine", f"oneDNN {key}", value, "") for key, value in onednn_isa().items()]
    return rows


def _convolve_verbosely() -> None:
    """One channels_last convolution in fp32 and in bf16, with oneDNN's verbose log on."""
    torch._C._verbose.mkldnn_set_verbose(1)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(8, 64, 24, 24).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x)


if __name__ == "__main__":
    _convolve_verbosely()
