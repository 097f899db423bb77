"""Start-up: every command imports only what it uses (issue 25).

torch and Lightning take seconds to import. A command's module (``denoise/<command>.py``)
imports neither, so ``--help`` and a mistyped setting answer at once; its work is imported
once it runs. ``predict``, ``add_noise`` and ``export`` load checkpoints into a plain
``nn.Module`` and never import Lightning at all. The tests check the modules imported, in a
fresh interpreter, not a time: times vary with the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env
from PIL import Image

# What inference never needs; each of these costs from a tenth of a second to seconds.
NOT_FOR_INFERENCE = (
    "lightning",
    "pytorch_lightning",
    "torchmetrics",
    "tensorboard",
    "matplotlib",
    "pandas",
    "skimage",
)
COMMANDS = ("train", "evaluate", "predict", "export", "report", "bench", "add_noise", "demo")
NOT_FOR_HELP = ("torch", "lightning", "numpy", "pandas", *NOT_FOR_INFERENCE)

# Import the inference commands, then add noise to an image and denoise it, in one process.
INFERENCE_RUN = """
import json, sys
from hydra import compose, initialize_config_module
import denoise.data.noisy_files, denoise.inference.export_model, denoise.inference.restore_files
from denoise import CONFIG_MODULE
image, noisy, clean = sys.argv[1:4]
with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
    noise = compose("add_noise", [f"input={image}", f"output={noisy}", "amount=0.2", "seed=0"])
    denoise.data.noisy_files.add_noise(noise)
    run = compose("predict", [f"input={noisy}", f"output={clean}", "self_ensemble=1"])
    denoise.inference.restore_files.predict(run)
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in NAMES)))
"""


def imported(script: str, *args: str) -> set[str]:
    """The modules of :data:`NOT_FOR_INFERENCE` that ``script`` leaves imported."""
    names = f"NAMES = {NOT_FOR_INFERENCE!r}\n"
    result = subprocess.run(
        [sys.executable, "-c", names + script, *args],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_inference_imports_no_training_machinery(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    rows = np.linspace(0, 255, 64, dtype=np.uint8)
    Image.fromarray(np.outer(rows, np.ones(64, np.uint8))).save(image)
    clean = tmp_path / "clean.png"
    loaded = imported(INFERENCE_RUN, str(image), str(tmp_path / "noisy.png"), str(clean))
    assert clean.is_file()
    assert loaded == set()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_no_torch(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"denoise.{command}", "--help"],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"python -m denoise.{command}" in result.stdout  # its usage line
    # -X importtime writes "import time: self | cumulative | name" for every module imported
    names = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert {name.split(".")[0] for name in names} & set(NOT_FOR_HELP) == set()
