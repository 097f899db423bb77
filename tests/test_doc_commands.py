"""Every command the README and the docs show runs as written, on tiny data (issue 26).

The commands are read from the pages themselves (fenced blocks and inline code), so a page
that gains a command gains a test. Each is run as a user would type it, from a folder where
the paths it names exist: data, photos and runs are tiny stand-ins made here, and settings
that only make it short (one batch, one epoch, a few images) are appended. What cannot run
here says why, and is still checked as far as this machine allows: a Slurm launch composes,
a CI step is found in ``.ci/run``.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, child_env, fer_frame, run_command, smooth_images, wait_until
from PIL import Image

pytestmark = pytest.mark.slow

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CI_SCRIPT = REPO / ".ci" / "run"
PROGRAMS = r"python -m denoise\.[a-z_]+|pip install|pytest|bash \.ci/run|mkdocs|tensorboard|mlflow"
ASSIGNMENT = r"[A-Z_][A-Z_0-9]*=\S*"
COMMAND = re.compile(rf"^(?:{ASSIGNMENT}\s+)*(?:{PROGRAMS})(?=\s|$)")
TITLED_FENCE = re.compile(r'^\s*```\w*\s+title="([^"]+)"')
FENCE = re.compile(r"^\s*```")
INLINE = re.compile(r"`([^`\n]+)`")
ELLIPSIS = "…"


def page_commands(markdown: str) -> list[str]:
    """The commands of one page: lines of fenced blocks (continuations joined, ``$ `` prompts
    and trailing comments dropped) and inline code spans that start with a program."""
    found: list[str] = []
    in_fence = False
    pending = ""
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            text = pending + line.strip().removeprefix("$ ")
            if text.endswith("\\"):
                pending = text[:-1].rstrip() + " "
                continue
            pending = ""
            text = re.sub(r"\s+#\s.*$", "", text).strip()
            found += _commands_in(text)
        else:
            for span in INLINE.findall(line):
                found += _commands_in(span)
    return found


def _commands_in(text: str) -> list[str]:
    """The commands of a line or a code span: each part of an ``&&`` chain that starts with a
    program."""
    parts = [part.strip() for part in text.split("&&")]
    return [part for part in parts if COMMAND.match(part)]


def shown_commands() -> dict[str, list[str]]:
    """Every command shown, once, with the pages that show it, in page order."""
    shown: dict[str, list[str]] = {}
    for page in PAGES:
        for command in page_commands(page.read_text(encoding="utf-8")):
            name = str(page.relative_to(REPO))
            shown.setdefault(command, [])
            if name not in shown[command]:
                shown[command].append(name)
    return shown


def titled_files() -> dict[str, str]:
    """The files the pages show whole (a fenced block with ``title="path"``): the commands
    after them expect them to exist."""
    files: dict[str, str] = {}
    for page in PAGES:
        title, lines = None, []
        for line in page.read_text(encoding="utf-8").splitlines():
            if title is None and (opening := TITLED_FENCE.match(line)):
                title, lines = opening.group(1), []
            elif title is not None and FENCE.match(line):
                files[title] = "\n".join(lines) + "\n"
                title = None
            elif title is not None:
                lines.append(line)
    return files


def test_the_reader_finds_commands_where_pages_show_them() -> None:
    markdown = "\n".join(
        [
            "Run `python -m denoise.predict input=a.png` or `pytest`, not `pytest, the docs`.",
            "```bash",
            "$ pip install torch==2.13.0 && pip install -e .  # CPU",
            "python -m denoise.train data=folder \\",
            "  data.train_dir=photos",
            "ls outputs",
            "```",
        ]
    )
    assert page_commands(markdown) == [
        "python -m denoise.predict input=a.png",
        "pytest",
        "pip install torch==2.13.0",
        "pip install -e .",
        "python -m denoise.train data=folder data.train_dir=photos",
    ]


# --- how a command that cannot run as it is here is checked instead ------------------------

# Commands that need a machine this is not: checked by composing their configuration.
NEEDS_SLURM = "hydra/launcher=slurm"


def _plain(command: str) -> str:
    """A command in the form the docs show it: ``python -m pip`` as ``pip``, no environment
    assignments, no ``--quiet``, no quotes, no ``--site-dir`` (CI builds into a temporary one)."""
    command = re.sub(r"^(?:[A-Z_0-9]+=\S+\s+)+", "", command.strip())
    command = re.sub(r"^python -m (pip|pytest|mkdocs)\b", r"\1", command)
    command = re.sub(r"\s--site-dir\s+\S+", "", command.replace("--quiet ", ""))
    return command.replace('"', "").strip()


def ci_steps() -> list[str]:
    """The commands ``.ci/run`` runs, as the docs would show them."""
    lines = CI_SCRIPT.read_text(encoding="utf-8").splitlines()
    return [_plain(line) for line in lines if line.strip() and not line.startswith("#")]


def in_ci(command: str) -> bool:
    """Whether CI runs ``command`` exactly (or it is ``.ci/run`` itself)."""
    return command == "bash .ci/run" or _plain(command) in ci_steps()


# Commands another test runs in their real setting: the test that does, by name.
ELSEWHERE = {
    # a wheel built from the checkout, installed into a fresh venv, run from another folder
    "pip install .": ("test_package", "test_the_wheel_runs_predict_and_train_from_any_folder"),
}


def test_ci_steps_are_read_as_the_docs_write_them() -> None:
    built = _plain('NO_X=1 python -m mkdocs build --strict --site-dir "$d"')
    assert built == "mkdocs build --strict"
    assert _plain('python -m pip install --quiet -e ".[dev]"') == "pip install -e .[dev]"
    assert in_ci("pytest") and in_ci("pytest -m slow") and not in_ci("pytest -x")


# --- the tiny world the commands run in -----------------------------------------------------

TRAIN_SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.batch_size=2",
    "data.eval_batch_size=4",
    "data.num_workers=0",
]
FOLDER_SHORT = ["data.crops_per_image=1"]
EVALUATE_SHORT = ["limit=2"]
BENCH_SHORT = [
    "min_seconds=0.01",
    "inference_batches=[1]",
    "precisions=[fp32]",
    "compile=false",
    "peak_memory_batches=0",
    "photos.megapixels=0.01",
    "photos.views=[1]",
    "photos.engines=[torch]",
    "photos.memory_megapixels=[]",
    "photos.whole_megapixels=[]",
    "startup=false",
]


@dataclass
class World:
    """A folder laid out as the docs assume: data, photos and the runs they refer to."""

    root: Path
    runs: dict[str, Path]
    # the last run with checkpoints that a command of each page made: what "outputs/runs/…"
    # means there (the stage before, the run just trained)
    latest: dict[str, Path] = field(default_factory=dict)

    @property
    def fer_csv(self) -> Path:
        return self.root / "fer.csv"


def _picture(path: Path, size: int, colour: bool, seed: int) -> None:
    planes = smooth_images(3 if colour else 1, size, size, seed)
    array = np.stack(list(planes), axis=-1) if colour else planes[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _folder(path: Path, count: int, size: int, colour: bool) -> None:
    for index in range(count):
        _picture(path / f"{index:02d}.png", size, colour, seed=index)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("docs_world")
    fer_frame({"Training": 8, "PrivateTest": 4, "PublicTest": 4}).to_csv(
        root / "fer.csv", index=False
    )
    _folder(root / "grey", 10, 180, colour=False)
    _folder(root / "colour", 10, 180, colour=True)
    for split in ("train", "val", "test"):
        _folder(root / "split" / split, 3, 180, colour=False)
    _folder(root / "pictures", 2, 64, colour=False)
    for name in ("photo", "noisy", "face", "camera", "camera_noisy", "astronaut"):
        _picture(root / f"{name}.png", 64, colour=name in {"photo", "astronaut"}, seed=7)
    (root / "denoise" / "weights").mkdir(parents=True)  # export's output= in a recipe
    for name, text in titled_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return World(root=root, runs={})


def trained(world: World, name: str, *settings: str, sweep: bool = False) -> Path:
    """The folder of a finished short training (a sweep, with ``sweep``) on the tiny CSV, with
    ``settings``: made once per ``name``."""
    if name not in world.runs:
        folder = world.root / "outputs" / ("multirun" if sweep else "runs") / name
        command = [
            *(sys.executable, "-m", "denoise.train", *(["-m"] if sweep else [])),
            f"data.csv_path={world.fer_csv}",
            f"hydra.{'sweep' if sweep else 'run'}.dir={folder}",
            *settings,
            *TRAIN_SHORT,
        ]
        finished = run_command(command, world.root)
        assert finished.returncode == 0, finished.stderr[-3000:]
        world.runs[name] = folder
    return world.runs[name]


def tiny_run(world: World) -> Path:
    """A finished run of the default command."""
    return trained(world, "default")


def tiny_sweep(world: World) -> Path:
    """A finished two-job sweep of the default command."""
    return trained(world, "sweep", "data.noise.amount=0.1,0.3", sweep=True)


# Paths the docs name, and the tiny stand-in each becomes (applied in this order).
def _substitutions(world: World, pages: list[str], resumes: bool) -> list[tuple[str, object]]:
    csv = str(world.fer_csv)

    def run(_: re.Match) -> str:
        """The run a page means by ``outputs/runs/…``: the last one its commands made (the
        stage before, the run just trained), else the default command's; a resume continues
        a run of its own settings, the default command's."""
        made_here = [world.latest[page] for page in pages if page in world.latest]
        return str(made_here[0] if made_here and not resumes else tiny_run(world))

    return [
        (r"(?:path/to|\.\./shared/data|…)/fer2013\.csv(?:\.xz)?", csv),
        (r"data\.csv_path=…", f"data.csv_path={csv}"),
        (r"\.\./shared/data/train400", str(world.root / "grey")),
        (r"\.\./shared/data/cbsd432", str(world.root / "colour")),
        (r"my_photos/?", str(world.root / "colour")),
        (r"photos/(train|val|test)", lambda m: str(world.root / "split" / m.group(1))),
        (r"(?<![\w/])photos/?(?=\s|$)", str(world.root / "grey")),
        (r"input=folder/", f"input={world.root / 'pictures'}"),
        (r"outputs/multirun/\S*", lambda m: str(tiny_sweep(world))),
        (r"<sweep folder>", lambda m: str(tiny_sweep(world))),
        (r"outputs/runs/\S*?(?=/checkpoints/)", run),
        (r"(?<=run_dir=)outputs/runs/\S*", run),
        (r"ckpt_path=…", lambda m: f"ckpt_path={run(m)}/checkpoints/best.ckpt"),
        (r"input=…", "input=photo.png"),
        (r"output=…", "output=restored.png"),
        (r"\[…,", "[0.5,"),
        (r"search\.trials=\d+", "search.trials=2"),
        (r"hydra\.launcher\.n_jobs=\d+", "hydra.launcher.n_jobs=2"),
        (r"\s…(?=\s|$)", ""),
    ]


def as_run_here(command: str, world: World, pages: list[str]) -> list[str]:
    """``command`` with the docs' paths replaced by the tiny world's, split as a shell would."""
    resumes = command.startswith("python -m denoise.train") and "ckpt_path=" in command
    for pattern, replacement in _substitutions(world, pages, resumes):
        command = re.sub(pattern, replacement, command)
    assert ELLIPSIS not in command and "<" not in command, f"a placeholder is left: {command}"
    return shlex.split(command)


def _composes_folder_data(arguments: list[str]) -> bool:
    from conftest import command_config

    overrides = [
        re.sub(r"^([^=\[]+=)([^,\[]*),.*$", r"\1\2", argument)  # a sweep: its first value
        for argument in arguments
        if "=" in argument and not argument.startswith(("hydra", "-"))
    ]
    try:
        config = command_config("train", *overrides)
    except Exception:
        return "data=folder" in arguments  # and the command's own run says what is wrong
    return "crops_per_image" in config.data


def short_settings(module: str, arguments: list[str], world: World, index: int) -> list[str]:
    """What makes ``module`` run briefly and write inside the tiny world."""
    if module == "denoise.train":
        flags = ["hydra.sweep.dir=" if "-m" in arguments else "hydra.run.dir="]
        where = world.root / "outputs" / ("multirun" if "-m" in arguments else "runs") / str(index)
        settings = [f"{flags[0]}{where}", *TRAIN_SHORT]
        if _composes_folder_data(arguments):
            settings += FOLDER_SHORT
        given = {a.split("=", 1)[0].lstrip("+") for a in arguments if "=" in a}
        return [s for s in settings if s.split("=", 1)[0] not in given]  # the page's own win
    if module == "denoise.evaluate":
        return [*EVALUATE_SHORT, f"hydra.run.dir={world.root / 'outputs' / 'eval' / str(index)}"]
    if module == "denoise.bench":
        return [*BENCH_SHORT, f"csv_path={world.fer_csv}"]
    return []


def flags_first(arguments: list[str]) -> list[str]:
    """Hydra's flags (``-m``, ``--cfg job``) before every override: its parser takes the
    overrides as one run of words, so an override after a flag would be refused."""
    flags: list[str] = []
    overrides: list[str] = []
    words = iter(arguments)
    for word in words:
        if word in {"--cfg", "-c", "--package", "-p"}:
            flags += [word, next(words)]
        elif word.startswith("-"):
            flags.append(word)
        else:
            overrides.append(word)
    return [*flags, *overrides]


SERVERS = {"denoise.demo"}  # commands that serve a page until stopped


def _serves(command: list[str], cwd: Path, port: int, logs: Path) -> None:
    """Start a server in ``cwd``, wait until its page answers on ``port`` (HTTP 200), stop it;
    what it printed goes into ``logs``."""
    log = logs / f"server-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=out, stderr=out)
    try:

        def answers() -> bool:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    return page.status == 200
            except OSError:
                return False

        wait_until(answers, 180, f"a page on port {port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SHOWN = shown_commands()


def test_the_pages_show_commands() -> None:
    assert len(SHOWN) > 40  # the reader would find none if the fences changed form
    assert "python -m denoise.train" in SHOWN


@pytest.mark.parametrize("command", list(SHOWN), ids=lambda c: c[:70])
def test_the_command_runs_as_shown(command: str, world: World) -> None:
    where = ", ".join(SHOWN[command])
    index = list(SHOWN).index(command)
    if command in ELSEWHERE:
        module, test = ELSEWHERE[command]
        assert callable(getattr(__import__(module), test, None)), f"{module}.{test} is gone"
        return
    if command.startswith(("pip install", "pytest", "bash .ci/run", "mkdocs build")):
        assert in_ci(command), f"{command} ({where}) is neither run here nor by .ci/run"
        return
    words = shlex.split(command)
    env = {}
    while re.fullmatch(ASSIGNMENT, words[0]):  # VAR=value before the program
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if "PYTHONPATH" in env:  # the page's folder, and this checkout
        env["PYTHONPATH"] = f"{(world.root / env['PYTHONPATH']).resolve()}:{REPO}"
    if words[0] == "mkdocs":  # mkdocs serve
        _serves(
            [*words, "--dev-addr", f"127.0.0.1:{(port := _free_port())}"], REPO, port, world.root
        )
        return
    if len(words) == 1 and words[0] in {"tensorboard", "mlflow"}:  # a program named in a sentence
        assert run_command([*words, "--help"], world.root).returncode == 0
        return
    if words[0] == "tensorboard":
        tiny_run(world)
        port = _free_port()
        _serves([*words, "--port", str(port), "--host", "127.0.0.1"], world.root, port, world.root)
        return
    if words[0] == "mlflow":
        # MLflow's server needs SQLAlchemy 2, the Optuna sweeper 1.4 (the page says to run it
        # from an environment of its own): the store it is pointed at is read by MLflow here.
        run_dir = trained(world, "mlflow", "logger=mlflow")
        store = re.sub(
            r"outputs/runs/…", str(run_dir), words[words.index("--backend-store-uri") + 1]
        )
        read = "import mlflow, sys; print(len(mlflow.search_runs(search_all_experiments=True)))"
        runs = run_command([sys.executable, "-c", read], world.root, MLFLOW_TRACKING_URI=store)
        assert runs.returncode == 0 and runs.stdout.split()[-1] == "1", runs.stderr[-2000:]
        return
    module = words[2]
    program = re.sub(rf"^(?:{ASSIGNMENT}\s+)*", "", command)
    arguments = as_run_here(program, world, SHOWN[command])[3:]
    if (
        module in SERVERS and "--help" not in arguments
    ):  # serves until stopped: its page must answer
        port = _free_port()
        served = [a for a in arguments if not a.startswith("port=")] + [f"port={port}"]
        _serves([sys.executable, "-m", module, *served], world.root, port, world.root)
        return
    if not arguments and module not in {"denoise.train", "denoise.bench"}:
        arguments = ["--help"]  # a command named in a sentence, not a run: its help must show
    elif NEEDS_SLURM in arguments:
        arguments = [  # no cluster here: the launch composes, with a sweep's first value
            re.sub(r"^([^=\[]+=)([^,\[]*),.*$", r"\1\2", a) for a in arguments if a != "-m"
        ] + ["--cfg", "hydra"]
    else:
        arguments += short_settings(module, arguments, world, index)
    began = time.monotonic()
    arguments = flags_first(arguments)
    finished = run_command([sys.executable, "-m", module, *arguments], world.root, **env)
    assert finished.returncode == 0, (
        f"{command} ({where}) failed here as {arguments} after {time.monotonic() - began:.0f} s:\n"
        f"{finished.stderr[-3000:]}"
    )
    run_dirs = [a.split("=", 1)[1] for a in arguments if a.startswith("hydra.run.dir=")]
    made = run_dirs and (Path(run_dirs[-1]) / "checkpoints" / "last.ckpt").is_file()
    if module == "denoise.train" and made:
        world.latest.update(dict.fromkeys(SHOWN[command], Path(run_dirs[-1])))
