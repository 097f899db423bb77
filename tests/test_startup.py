"""Start-up: the inference commands import only what they use (issue 25).

Lightning and its company take seconds to import, so ``predict``, ``add_noise`` and
``export`` load checkpoints into a plain ``nn.Module`` and must never import them. The test
checks the modules imported, in a fresh interpreter, not a time: times vary with the machine.
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
# Commands that import no Lightning with their module (train, evaluate and bench still do:
# issue 25 moves their imports into the functions that need them).
LIGHT_COMMANDS = ("predict", "export", "report", "add_noise")

# Import the inference commands, then add noise to an image and denoise it, in one process.
INFERENCE_RUN = """
import json, sys
from hydra import compose, initialize_config_module
import denoise.add_noise, denoise.export, denoise.predict
from denoise import CONFIG_MODULE
image, noisy, clean = sys.argv[1:4]
with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
    noise = compose("add_noise", [f"input={image}", f"output={noisy}", "amount=0.2", "seed=0"])
    denoise.add_noise.add_noise(noise)
    run = compose("predict", [f"input={noisy}", f"output={clean}", "self_ensemble=1"])
    denoise.predict.predict(run)
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


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_command_module_imports_no_lightning(command: str) -> None:
    script = (
        f"import json, sys, denoise.{command}\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in NAMES)))"
    )
    assert not imported(script) & {"lightning", "pytorch_lightning"}
