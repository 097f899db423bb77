"""The package as users get it: a wheel that runs from any folder, a tree that shows the
commands, and a ``--help`` that fits each command."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, smooth_images
from PIL import Image

import denoise
from denoise.runtime.resolvers import config_groups_help, group_options

COMMANDS = {"add_noise", "bench", "demo", "evaluate", "export", "predict", "report", "train"}
SOURCES = ("pyproject.toml", "README.md", "conf", "denoise")


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH: the command must find the package the way an installed one is found."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "HYDRA_FULL_ERROR": "1", **extra}


def _run(python: Path | str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _fresh_venv(root: Path) -> Path:
    """A new virtual environment that borrows this one's installed packages (torch, Lightning,
    Hydra, …) through a .pth file: offline, and without this checkout's editable install,
    whose finder lives in a .pth file that a path entry does not run."""
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    purelib = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root
    )
    host = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib.stdout.strip(), "host-packages.pth").write_text("\n".join(sorted(host)) + "\n")
    return python


@pytest.mark.slow
def test_the_wheel_runs_predict_and_train_from_any_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building must not write into the checkout
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        ignore = (
            {"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}
        )
        copy(REPO / name, source / name, **ignore)
    wheels = tmp_path / "wheels"
    build = _run(
        sys.executable,
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
        *("--wheel-dir", str(wheels), str(source)),
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = wheels.glob("denoise-*.whl")

    python = _fresh_venv(tmp_path / "venv")
    install = _run(
        python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel), cwd=tmp_path
    )
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "elsewhere"  # neither the checkout nor the venv
    work.mkdir()
    where = _run(python, "-c", "import denoise, denoise.conf; print(denoise.__file__)", cwd=work)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv")  # the wheel, not the repo

    face = smooth_images(1, 48, 48)[0]
    noisy = face.copy()
    noisy[np.random.default_rng(0).random(face.shape) < 0.1] = 255
    Image.fromarray(noisy).save(work / "noisy.png")
    args = ("weights=faces", "input=noisy.png", "output=clean.png")  # a face: the face model
    predict = _run(python, "-m", "denoise.predict", *args, cwd=work)
    assert predict.returncode == 0, predict.stderr[-3000:]
    clean = np.asarray(Image.open(work / "clean.png"), dtype=float)
    assert np.abs(clean - face).mean() < np.abs(noisy.astype(float) - face).mean() / 3

    train = _run(
        python,
        *("-m", "denoise.train", "debug=fast", "logger=none"),
        *("model.net.base_channels=4", "model.net.depth=3", "trainer.enable_model_summary=false"),
        cwd=work,
        DENOISE_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert train.returncode == 0, train.stderr[-3000:]
    (run_dir,) = (work / "outputs" / "runs").glob("*/*")
    assert f"This run writes into {run_dir.resolve()}" in train.stdout + train.stderr
    assert f"Outputs of this run in {run_dir.resolve()}:" in train.stdout + train.stderr
    assert '"status": "completed"' in (run_dir / "summary.json").read_text()


def test_only_commands_sit_at_the_top_of_the_package() -> None:
    """Every top-level module is a command a user runs: it has a ``main`` and runs as
    ``python -m``. The parts live in subpackages, each with a docstring saying what it holds."""
    package = Path(denoise.__file__).parent
    modules = {path.stem for path in package.glob("*.py")} - {"__init__"}
    assert modules == COMMANDS
    for name in modules:
        tree = ast.parse((package / f"{name}.py").read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "main" in functions, name
    subpackages = [path for path in package.iterdir() if (path / "__init__.py").is_file()]
    assert {path.name for path in subpackages} >= {"data", "models", "inference", "files"}
    for path in subpackages:
        assert ast.get_docstring(ast.parse((path / "__init__.py").read_text())), path.name


def test_group_help_lists_the_composed_groups_with_every_option() -> None:
    choices = {"data": "fer", "model": "unet", "experiment": None, "hydra/help": "command"}
    lines = config_groups_help(choices).splitlines()
    assert lines[1:] == [
        "data=fer          fer, folder",
        "experiment=null   faces, natural, natural_colour, peer_attention_unet, reference",
        "model=unet        corruption_aware, unet",
        "",
    ]
    assert config_groups_help({"hydra/job_logging": "stdout"}) == ""
    assert group_options("no_such_group") == []


@pytest.mark.parametrize(
    ("command", "groups"),
    [
        ("evaluate", {"data", "paths"}),
        ("predict", set()),
        (
            "train",
            {"callbacks", "data", "debug", "experiment", "logger", "model", "optimizer", "paths"}
            | {"scheduler", "trainer", "hparams_search", "model/net"},
        ),
    ],
)
def test_help_lists_only_the_groups_the_command_uses(
    tmp_path: Path, command: str, groups: set[str]
) -> None:
    result = _run(sys.executable, "-m", f"denoise.{command}", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"python -m denoise.{command}" in result.stdout  # its own usage line
    section = result.stdout.partition("== Config groups")[2].partition("== Settings")[0]
    listed = {line.split("=")[0] for line in section.splitlines()[1:] if "=" in line}
    assert listed == groups
    assert list(tmp_path.iterdir()) == []  # help writes nothing
