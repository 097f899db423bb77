"""Compare the jobs of a sweep: ``python -m denoise.report SWEEP_DIR``.

Writes ``report.md``, ``report.csv`` (one row per job) and ``report_psnr_vs_amount.png`` into
the sweep folder and prints the table. The ``SweepReport`` Hydra callback
(:mod:`denoise.reporting.callback`) runs the same report at the end of every
``python -m denoise.train -m ...``, so a sweep's jobs can be compared without TensorBoard. The
work lives in :mod:`denoise.reporting.sweep_table`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from denoise.files.outputs import absolute
from denoise.reporting.sweep_table import REPORT_CSV, REPORT_MD, REPORT_PLOT, write_report

USAGE = "usage: python -m denoise.report SWEEP_DIR"
HELP = f"""{USAGE}

Compare the jobs of a sweep (a folder of python -m denoise.train -m ...): one row per job with
its overrides, status, test PSNR, SSIM and MSE, the noisy input's PSNR, the best validation
PSNR, epochs and wall time, and a plot of test PSNR against data.noise.amount. A job that
says running but whose process is gone (killed, or its machine lost power) shows as died.

Writes {REPORT_MD}, {REPORT_CSV} and {REPORT_PLOT} into SWEEP_DIR and prints the table.
Every sweep already writes them when it ends; run this to refresh them, e.g. while it runs.

example: python -m denoise.report outputs/multirun/2026-11-25/14-10-00"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(HELP)
        return 0
    if len(args) != 1 or not Path(args[0]).is_dir():
        problem = (
            f"{args[0]}: no such folder"
            if len(args) == 1
            else f"one SWEEP_DIR expected, got {len(args)} arguments"
        )
        print(f"error: {problem}\n{USAGE}", file=sys.stderr)
        return 2
    print(f"Reporting on the sweep in {absolute(args[0])}")
    print(write_report(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
