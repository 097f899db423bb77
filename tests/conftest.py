"""Shared scaffolding: tiny synthetic FER-style CSVs and checkpoints, Hydra configs pointed at
tmp_path, and the commands run as subprocesses the way a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from denoise import CONFIG_MODULE
from denoise.runtime.errors import user_errors

REPO = Path(__file__).resolve().parents[1]
FER2013 = REPO.parent / "shared" / "data" / "fer2013.csv.xz"
TINY_MODEL = ["model.net.base_channels=4", "model.net.depth=3", "model.net.dropout=0.0"]


def train_command(csv_path: Path, tmp_path: Path, *settings: str) -> list[str]:
    """``python -m denoise.train`` as a subprocess test runs it: tiny model, ``csv_path`` as
    data, the cache under ``tmp_path``, then ``settings``; flags (``-m``) go before every
    override, as Hydra wants."""
    flags = [setting for setting in settings if setting.startswith("-")]
    overrides = [setting for setting in settings if not setting.startswith("-")]
    return [
        sys.executable,
        "-m",
        "denoise.train",
        *flags,
        f"data.csv_path={csv_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *TINY_MODEL,
        *overrides,
    ]


def child_env(*unset: str) -> dict[str, str]:
    """This environment for a subprocess test: this checkout importable, ``unset`` removed."""
    env = {key: value for key, value in os.environ.items() if key not in unset}
    return {**env, "PYTHONPATH": str(REPO)}


def python_module(module: str, *args: str) -> list[str]:
    """``python -m module args`` with the interpreter running the tests."""
    return [sys.executable, "-m", module, *args]


def run_command(
    command: list[str], cwd: Path, *unset: str, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end in ``cwd`` with :func:`child_env` (``unset`` removed, ``env``
    added) and its output captured as text; the timeout only stops a hung child."""
    return subprocess.run(
        command,
        cwd=cwd,
        env={**child_env(*unset), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


@contextmanager
def killed_when(
    command: list[str], cwd: Path, condition: Callable[[], bool], timeout: float, what: str
) -> Iterator[subprocess.Popen]:
    """Run ``command`` in the background until ``condition`` holds (it must not end first),
    yield it still running, then SIGKILL it as a power cut would; its output goes to
    ``cwd/command.out``. Never leaves the process behind, whatever the test does."""
    log = cwd / "command.out"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=out, stderr=out)
    try:

        def reached() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            return condition()

        wait_until(reached, timeout, what)
        yield process
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def smooth_images(count: int, height: int = 48, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 images with structure (gradients plus blobs), like small natural pictures."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(-1, 1, 3)
        cy, cx = rng.uniform(0, 1, 2)
        blob = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / 0.05)
        image = 0.5 + 0.25 * (a * rows + b * cols) + 0.3 * c * blob
        images.append(np.clip(np.rint(image * 255), 0, 255))
    return np.asarray(images, dtype=np.uint8)


def fer_frame(
    counts: dict[str, int] | None = None, height: int = 48, width: int = 48, seed: int = 0
) -> pd.DataFrame:
    """A FER-style frame with ``counts`` rows per Usage value."""
    counts = counts or {"Training": 64, "PrivateTest": 16, "PublicTest": 16}
    usages = [usage for usage, count in counts.items() for _ in range(count)]
    images = smooth_images(len(usages), height, width, seed)
    return pd.DataFrame(
        {
            "emotion": np.arange(len(usages)) % 7,
            "pixels": [" ".join(map(str, image.ravel())) for image in images],
            "Usage": usages,
        }
    )


def command_config(name: str, *overrides: str, **settings: object) -> DictConfig:
    """``conf/<name>.yaml`` as its command composes it, with ``overrides`` as given and then
    ``settings`` as overrides (paths quoted, so that any character in them is safe)."""
    quoted = [
        f"{key}='{value}'" if isinstance(value, Path) else f"{key}={value}"
        for key, value in settings.items()
    ]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(name, overrides=[*overrides, *quoted])


def user_error(function: Callable[[DictConfig], object], cfg: DictConfig, capsys) -> list[str]:
    """Run a command's body as its ``main`` does; return the lines it printed on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped, user_errors():
        function(cfg)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line]


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """``model`` (a ``DenoisingModule`` or ``Denoiser``) saved with its hyperparameters, as
    the checkpoints that ``denoise.train`` writes hold them."""
    from lightning import __version__ as lightning_version

    state = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning_version,
    }
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module of tiny models (``pytestmark = usefixtures``): on a busy
    2-core machine two threads waiting on each other made tiny steps many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    fer_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def compose_config(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose a primary config of ``conf/``, found as the commands find it (the package
    ``denoise.conf``), with every output path under ``tmp_path``."""

    def _compose(config_name: str, *overrides: str, output_dir: Path | None = None) -> DictConfig:
        output_dir = output_dir or tmp_path / "run"
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(
                config_name,
                overrides=[
                    f"paths.log_dir={tmp_path / 'outputs'}",
                    f"paths.cache_dir={tmp_path / 'cache'}",
                    "data.num_workers=0",
                    *overrides,
                ],
                return_hydra_config=True,
            )
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.hydra.runtime.output_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_train(compose_config: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    """``conf/train.yaml`` on the CPU, without the model summary."""

    def _compose(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        cpu = ["trainer.accelerator=cpu", "trainer.enable_model_summary=false"]
        return compose_config("train", *cpu, *overrides, output_dir=output_dir)

    return _compose


@pytest.fixture
def tiny_checkpoint(
    compose_train: Callable[..., DictConfig], tiny_csv: Path, tmp_path: Path
) -> Path:
    """The best checkpoint of a tiny model trained for one short epoch on ``tiny_csv``."""
    from denoise.training.run import train

    cfg = compose_train(
        f"data.csv_path={tiny_csv}",
        *TINY_MODEL,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "data.batch_size=16",
        "logger=none",
        output_dir=tmp_path / "trained",
    )
    train(cfg)
    GlobalHydra.instance().clear()
    return tmp_path / "trained" / "checkpoints" / "best.ckpt"


requires_fer2013 = pytest.mark.skipif(
    not FER2013.exists(), reason=f"real FER2013 not found at {FER2013}"
)
