"""Faults of checkpoints and files, round two: an export over the run's own files, weights
that hold NaN, a full disk, a checkpoint whose hyperparameters are no mapping, a GPU that is
not there, noise settings out of range, a YAML tag in a run's record, and paths that are no
regular file (a FIFO, a device, a socket, a link loop). Each ends in one exact ``error: …``
line naming the user's path or setting, exit status 1, nothing written and nothing removed."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, command_config, python_module, run_command, user_error
from PIL import Image

from denoise.data import fer_csv, image_folder
from denoise.data.fer_csv import load_fer_csv
from denoise.data.image_folder import load_image_folder
from denoise.data.noisy_files import add_noise
from denoise.evaluation.scoring import evaluate
from denoise.files.atomic import atomic_file, atomic_files
from denoise.files.outputs import discard_run_record
from denoise.inference.checkpoints import SHIPPED_MODELS, read_checkpoint
from denoise.inference.export_model import export
from denoise.inference.restore_files import predict
from denoise.models.module import DenoisingModule
from denoise.runtime.errors import user_errors
from denoise.training.run import train

NO_SPACE = os.strerror(errno.ENOSPC)
MARKER = "EXECUTED"


def disk_full(*args: object, **kwargs: object) -> None:
    """A write that finds the disk full: errno ENOSPC and no file name, as ``write`` says it."""
    raise OSError(errno.ENOSPC, NO_SPACE)


@contextmanager
def never_blocked_by(path: Path, seconds: float = 5.0) -> Iterator[None]:
    """Fail instead of hanging where ``path`` is a FIFO: opening one for reading blocks until
    a writer comes (in C, where no signal helps). After ``seconds`` a writer comes whenever a
    reader waits, writes nothing and goes, so that the reader gets an empty file, and the
    test fails saying so."""
    if not stat.S_ISFIFO(os.lstat(path).st_mode):
        yield
        return
    finished, blocked = threading.Event(), threading.Event()

    def release() -> None:
        if finished.wait(seconds):
            return
        while not finished.wait(0.05):
            with suppress(OSError):  # ENXIO: no reader has it open
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                blocked.set()

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        finished.set()
        watchdog.join()
        assert not blocked.is_set(), f"{path} was opened: a reader blocked on it"


def files_under(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` with its bytes: what must stay as it was."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


# ---------------------------------------------------------------- a run folder, built directly


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, object]:
    """A tiny model's checkpoint contents, as ``denoise.train`` saves them (no training: the
    faults here are in the file, not the weights' quality)."""
    torch.manual_seed(0)
    model = DenoisingModule(base_channels=4, depth=3, dropout=0.0)
    return {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "optimizer_states": [],
        "loops": {},
    }


def save_checkpoint(path: Path, state: dict[str, object], **changes: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**state, **changes}, path)
    return path


def with_weight(state: dict[str, object], value: float) -> dict[str, object]:
    """``state`` with one value of its first convolution's weights set to ``value``."""
    weights = {name: tensor.clone() for name, tensor in state["state_dict"].items()}
    name = next(name for name in weights if name.endswith("weight"))
    weights[name].view(-1)[3] = value
    return {"state_dict": weights}


def first_weight(state: dict[str, object]) -> str:
    return next(name for name in state["state_dict"] if name.endswith("weight"))


@pytest.fixture
def run_dir(tmp_path: Path, tiny_state: dict[str, object]) -> Path:
    """A completed training run as ``python -m denoise.train`` leaves it."""
    run = tmp_path / "run"
    for name in ("best", "last"):
        save_checkpoint(run / "checkpoints" / f"{name}.ckpt", tiny_state)
    summary = {
        "status": "completed",
        "epochs_completed": 1,
        "wall_time_s": 3.0,
        "machine": "a test machine",
        "best_epoch": {"val/psnr": 30.0},
        "test": {"test/psnr": 29.0},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("model:\n  base_channels: 4\n")
    (run / ".hydra" / "overrides.yaml").write_text("- model.net.base_channels=4\n")
    (run / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")
    return run


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(path)
    return path


# ---------------------------------------------------------------- 3: export over the run's files


def _same_path(run: Path, outside: Path) -> Path:
    return run / "checkpoints" / "best.ckpt"


def _symbolic_link(run: Path, outside: Path) -> Path:
    link = outside / "link.ckpt"
    link.symlink_to(run / "checkpoints" / "best.ckpt")
    return link


def _hard_link(run: Path, outside: Path) -> Path:
    link = outside / "hard.ckpt"
    os.link(run / "checkpoints" / "best.ckpt", link)
    return link


def _spelled_otherwise(run: Path, outside: Path) -> Path:
    return run / ".hydra" / ".." / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize(
    "output", [_same_path, _symbolic_link, _hard_link, _spelled_otherwise],
    ids=["the path", "a symbolic link", "a hard link", "another spelling"],
)  # fmt: skip
def test_export_never_writes_over_the_runs_own_checkpoint(
    run_dir: Path, tmp_path: Path, capsys, output: Callable[[Path, Path], Path]
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = output(run_dir, outside)
    before, around = files_under(run_dir), files_under(outside)

    lines = user_error(export, command_config("export", run_dir=run_dir, output=target), capsys)

    assert lines == [
        f"error: output={target}: would replace the run's own checkpoints/best.ckpt; "
        "choose another output path"
    ]
    assert files_under(run_dir) == before and files_under(outside) == around


def test_export_never_writes_its_card_over_a_file_of_the_run(run_dir: Path, capsys) -> None:
    (run_dir / "notes.md").write_text("what I tried")
    target = run_dir / "notes.ckpt"
    before = files_under(run_dir)

    lines = user_error(export, command_config("export", run_dir=run_dir, output=target), capsys)

    assert lines == [
        f"error: output={target}: its model card would replace the run's own notes.md; "
        "choose another output path"
    ]
    assert files_under(run_dir) == before


def test_export_into_a_new_file_of_the_run_folder_is_fine(run_dir: Path) -> None:
    target = run_dir / "exported" / "model.ckpt"
    export(command_config("export", run_dir=run_dir, output=target))
    assert read_checkpoint(target)["denoise_card"]["epochs"] == 1
    assert target.with_suffix(".md").is_file()


# ---------------------------------------------------------------- 4: weights that are not finite


@pytest.mark.parametrize(("value", "what"), [(float("nan"), "NaN"), (float("inf"), "infinite"),
                                             (float("-inf"), "infinite")])  # fmt: skip
def test_predict_refuses_weights_that_are_not_finite(
    tiny_state, tmp_path: Path, picture: Path, capsys, value: float, what: str
) -> None:
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", tiny_state, **with_weight(tiny_state, value))
    output = tmp_path / "out.png"
    cfg = command_config("predict", input=picture, output=output, ckpt_path=checkpoint)

    lines = user_error(predict, cfg, capsys)

    assert lines == [
        f"error: {checkpoint}: not a usable checkpoint ({first_weight(tiny_state)} holds {what} "
        "values: the training diverged?)"
    ]
    assert not output.exists()


def test_every_reader_of_a_checkpoint_refuses_nan_weights(
    tiny_state, run_dir: Path, tmp_path: Path, tiny_csv: Path, compose_config, capsys
) -> None:
    """evaluate, export, and train's init_from and resume: all read through one function."""
    nan = with_weight(tiny_state, float("nan"))
    best = save_checkpoint(run_dir / "checkpoints" / "best.ckpt", tiny_state, **nan)
    line = (
        f"error: {best}: not a usable checkpoint ({first_weight(tiny_state)} holds NaN values: "
        "the training diverged?)"
    )
    output = tmp_path / "model.ckpt"
    assert user_error(export, command_config("export", run_dir=run_dir, output=output), capsys) == [
        line
    ]
    assert not output.exists()

    evaluation = compose_config(
        "evaluate", f"ckpt_path={best}", f"data.csv_path={tiny_csv}", output_dir=tmp_path / "ev"
    )
    assert user_error(evaluate, evaluation, capsys) == [line]
    for key in ("init_from", "ckpt_path"):
        cfg = compose_config(
            "train",
            f"data.csv_path={tiny_csv}",
            *TINY_MODEL,
            f"{key}={best}",
            "logger=none",
            "trainer.accelerator=cpu",
            output_dir=tmp_path / key,
        )
        assert user_error(train, cfg, capsys) == [line]
    assert not (tmp_path / "cache").exists()  # refused before the data was read


def test_the_shipped_weights_are_finite() -> None:
    for model in SHIPPED_MODELS.values():
        if model.weights.is_file():
            read_checkpoint(model.weights)


# ---------------------------------------------------------------- 5 and 6: a full disk


def test_a_full_disk_names_the_destination_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(OSError) as raised, atomic_file(target, "w") as handle:
        handle.write("new")
        disk_full()
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_a_temporary_that_cannot_be_made_names_the_destination(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model.md"

    def refused(*args: object, dir: str, prefix: str, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), f"{dir}/{prefix}x.tmp")

    monkeypatch.setattr("denoise.files.atomic.tempfile.NamedTemporaryFile", refused)
    with pytest.raises(PermissionError) as raised, atomic_file(target):
        pass
    assert raised.value.filename == str(target)


def test_a_group_whose_second_file_cannot_be_renamed_puts_the_first_back(
    tmp_path: Path, monkeypatch
) -> None:
    weights, card = tmp_path / "model.ckpt", tmp_path / "model.md"
    weights.write_text("old weights")
    replace = os.replace

    def fails_for_the_card(source: str, destination: str) -> None:
        if Path(destination) == card:
            raise OSError(errno.EIO, os.strerror(errno.EIO), source, destination)
        replace(source, destination)

    monkeypatch.setattr("denoise.files.atomic.os.replace", fails_for_the_card)
    with pytest.raises(OSError) as raised, atomic_files() as files:
        with files.add(weights, "w") as handle:
            handle.write("new weights")
        with files.add(card, "w") as handle:
            handle.write("new card")
    assert raised.value.filename == str(card)
    assert weights.read_text() == "old weights"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.ckpt"]


@pytest.mark.parametrize("failing", ["torch.save", "card_markdown"], ids=["weights", "card"])
def test_export_to_a_full_disk_leaves_both_files_as_they_were(
    run_dir: Path, tmp_path: Path, monkeypatch, capsys, failing: str
) -> None:
    """Both files or neither, and the line names the user's file, not a temporary."""
    folder = tmp_path / "weights"
    folder.mkdir()
    output, card = folder / "model.ckpt", folder / "model.md"
    output.write_text("an earlier export")
    card.write_text("its card")
    monkeypatch.setattr(f"denoise.inference.export_model.{failing}", disk_full)

    lines = user_error(export, command_config("export", run_dir=run_dir, output=output), capsys)

    named = output if failing == "torch.save" else card
    assert lines == [f"error: {named}: {NO_SPACE}"]
    assert files_under(folder) == {"model.ckpt": b"an earlier export", "model.md": b"its card"}
    assert sorted(path.name for path in folder.iterdir()) == ["model.ckpt", "model.md"]


def test_export_whose_card_is_a_folder_writes_nothing(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "model.ckpt"
    (tmp_path / "model.md").mkdir()
    lines = user_error(export, command_config("export", run_dir=run_dir, output=output), capsys)
    assert lines == [
        f"error: output={output}: {tmp_path / 'model.md'}, its model card, is a folder"
    ]
    assert not output.exists()


def test_a_full_disk_while_caching_the_csv_is_one_line_and_leaves_no_run_folder(
    compose_train, tiny_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, "logger=none")
    cache = fer_csv._cache_file(tiny_csv, tmp_path / "cache", 48, 48)
    monkeypatch.setattr("denoise.data.fer_csv.np.savez", disk_full)
    capsys.readouterr()

    single_run = partial(discard_run_record, cfg.paths.output_dir, "train.log")  # main's cleanup
    with pytest.raises(SystemExit) as stopped, user_errors(cleanup=single_run):
        train(cfg)

    assert stopped.value.code == 1
    assert capsys.readouterr().err.splitlines() == [f"error: {cache}: {NO_SPACE}"]
    assert list(cache.parent.iterdir()) == []  # no temporary left
    assert not Path(cfg.paths.output_dir).exists()


def test_a_full_disk_while_caching_a_folder_is_one_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(2):
        Image.fromarray(np.full((8, 8), index * 60, dtype=np.uint8)).save(folder / f"{index}.png")
    files = sorted(folder.iterdir())
    names = [path.name for path in files]
    cache = image_folder._cache_file(folder, files, names, tmp_path / "cache", 1)
    monkeypatch.setattr("denoise.data.image_folder.np.savez", disk_full)
    capsys.readouterr()

    with pytest.raises(SystemExit), user_errors():
        load_image_folder(folder, tmp_path / "cache", channels=1)

    assert capsys.readouterr().err.splitlines() == [f"error: {cache}: {NO_SPACE}"]
    assert list(cache.parent.iterdir()) == []


# ---------------------------------------------------------------- 6: hyperparameters, devices


@pytest.mark.parametrize(("value", "kind"), [(["unet"], "list"), ("unet", "str")])
def test_hyperparameters_that_are_no_mapping_are_no_denoise_checkpoint(
    tiny_state, tmp_path: Path, picture: Path, compose_config, tiny_csv: Path, capsys, value, kind
) -> None:
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", tiny_state, hyper_parameters=value)
    line = (
        f"error: {checkpoint}: not a denoise checkpoint "
        f"(its hyper_parameters is a {kind}, not a mapping)"
    )
    output = tmp_path / "out.png"
    cfg = command_config("predict", input=picture, output=output, ckpt_path=checkpoint)
    assert user_error(predict, cfg, capsys) == [line]
    assert not output.exists()
    warm = compose_config(
        "train", f"data.csv_path={tiny_csv}", *TINY_MODEL, f"init_from={checkpoint}",
        "logger=none", "trainer.accelerator=cpu", output_dir=tmp_path / "run",
    )  # fmt: skip
    assert user_error(train, warm, capsys) == [line]


NO_GPU = "this machine has no CUDA GPU; use device=cpu (or leave device unset)"


@pytest.mark.parametrize(
    ("device", "problem"),
    [("cuda", NO_GPU), ("cuda:0", NO_GPU), ("banana", "must be auto, cpu, cuda or cuda:N"),
     ("meta", "must be auto, cpu, cuda or cuda:N")],
)  # fmt: skip
def test_predict_and_evaluate_check_the_device_before_any_work(
    tmp_path: Path, picture: Path, compose_config, capsys, monkeypatch, device, problem
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # also on a GPU machine
    line = f"error: device={device}: {problem}"
    absent = tmp_path / "absent.ckpt"  # said before this one: nothing was read yet
    output = tmp_path / "out.png"
    cfg = command_config("predict", input=picture, output=output, ckpt_path=absent, device=device)
    assert user_error(predict, cfg, capsys) == [line]
    assert not output.exists()
    scoring = compose_config(
        "evaluate", f"ckpt_path={absent}", f"device={device}", output_dir=tmp_path / "ev"
    )
    assert user_error(evaluate, scoring, capsys) == [line]
    assert not (tmp_path / "ev").exists() and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- 6: add_noise settings


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("amount=nan", "error: amount=nan: must be a fraction in [0, 1] or a [low, high] range"),
        ("amount=2", "error: amount=2: must be a fraction in [0, 1] or a [low, high] range"),
        ("amount=-0.5", "error: amount=-0.5: must be a fraction in [0, 1] or a [low, high] range"),
        ("amount=inf", "error: amount=inf: must be a fraction in [0, 1] or a [low, high] range"),
        ("salt_vs_pepper=7", "error: salt_vs_pepper=7: must be a number in [0, 1]"),
        ("seed=-1", "error: seed=-1: must be a whole number of at least 0"),
    ],
)
def test_add_noise_refuses_settings_out_of_range(
    picture: Path, tmp_path: Path, capsys, setting: str, line: str
) -> None:
    output = tmp_path / "noisy.png"
    key, value = setting.split("=")
    cfg = command_config("add_noise", input=picture, output=output, **{key: value})
    assert user_error(add_noise, cfg, capsys) == [line]
    assert not output.exists()


# ---------------------------------------------------------------- 6: YAML tags in a run's record

TAGS = [
    (f'!!python/object/apply:os.system ["touch {MARKER}"]',
     "could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("- !banana model.net.depth=3", "could not determine a constructor for the tag '!banana'"),
    ("model: {depth: 3}", "not a list of key=value overrides"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "problem"), TAGS, ids=["python tag", "any tag", "a mapping"])
def test_export_refuses_a_run_record_with_a_yaml_tag_and_runs_nothing(
    run_dir: Path, tmp_path: Path, capsys, monkeypatch, text: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = run_dir / ".hydra" / "overrides.yaml"
    overrides.write_text(text + "\n")
    output = tmp_path / "model.ckpt"
    lines = user_error(export, command_config("export", run_dir=run_dir, output=output), capsys)
    assert lines == [f"error: {overrides}: not a valid run record ({problem})"]
    assert not (tmp_path / MARKER).exists() and not output.exists()


def test_report_runs_no_yaml_tag_of_a_job(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from denoise.reporting.sweep_table import collect_rows

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    job = sweep / "0-job"
    shutil.copytree(run_dir / ".hydra", job / ".hydra")
    (job / ".hydra" / "overrides.yaml").write_text(TAGS[0][0] + "\n")
    (job / ".hydra" / "config.yaml").write_text(TAGS[0][0] + "\n")
    (job / "summary.json").write_text(json.dumps({"status": "completed"}))

    (row,) = collect_rows(sweep)

    assert (row["status"], row["overrides"]) == ("completed", "")
    assert not (tmp_path / MARKER).exists()


# ---------------------------------------------------------------- 7: paths that are no file


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "is a FIFO (named pipe), not a file"


def _device(path: Path) -> str:
    path.symlink_to("/dev/zero")
    return "is a character device, not a file"


def _socket(path: Path) -> str:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays
    return "is a socket, not a file"


def _loop(path: Path) -> str:
    path.symlink_to(path.name)
    return "symbolic link loop"


def _dangling(path: Path) -> str:
    path.symlink_to("gone.ckpt")
    return "no such checkpoint (a symbolic link to gone.ckpt, which is not there)"


SPECIAL = [_fifo, _device, _socket, _loop]
SPECIAL_IDS = ["fifo", "device", "socket", "link loop"]


@pytest.mark.parametrize("make", [*SPECIAL, _dangling], ids=[*SPECIAL_IDS, "dangling link"])
def test_a_checkpoint_that_is_no_file_says_what_it_is(
    tmp_path: Path, picture: Path, capsys, make: Callable[[Path], str]
) -> None:
    checkpoint = tmp_path / "x.ckpt"
    problem = make(checkpoint)
    output = tmp_path / "out.png"
    cfg = command_config("predict", input=picture, output=output, ckpt_path=checkpoint)
    with never_blocked_by(checkpoint):
        assert user_error(predict, cfg, capsys) == [f"error: {checkpoint}: {problem}"]
    assert not output.exists()


def test_a_checkpoint_through_a_symbolic_link_is_read(tiny_state, tmp_path: Path) -> None:
    real = save_checkpoint(tmp_path / "real.ckpt", tiny_state)
    (tmp_path / "link.ckpt").symlink_to(real)
    assert read_checkpoint(tmp_path / "link.ckpt")["hyper_parameters"]["net"]["base_channels"] == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: no permission to lack")
def test_a_checkpoint_without_read_permission_is_one_line(
    tiny_state, tmp_path: Path, capsys
) -> None:
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", tiny_state)
    checkpoint.chmod(0)
    with pytest.raises(SystemExit), user_errors():
        read_checkpoint(checkpoint)
    assert capsys.readouterr().err.splitlines() == [
        f"error: {checkpoint}: cannot read the file (no read permission)"
    ]


@pytest.mark.parametrize("make", SPECIAL, ids=SPECIAL_IDS)
def test_a_csv_that_is_no_file_says_what_it_is(
    tmp_path: Path, capsys, make: Callable[[Path], str]
) -> None:
    csv = tmp_path / "x.csv"
    problem = make(csv)
    with never_blocked_by(csv), pytest.raises(SystemExit), user_errors():
        load_fer_csv(csv, tmp_path / "cache", {"train": ["Training"]})
    assert capsys.readouterr().err.splitlines() == [f"error: {csv}: {problem}"]


@pytest.mark.parametrize("make", SPECIAL, ids=SPECIAL_IDS)
def test_an_image_that_is_no_file_says_what_it_is(
    tmp_path: Path, capsys, make: Callable[[Path], str]
) -> None:
    source = tmp_path / "x.png"
    problem = make(source)
    output = tmp_path / "noisy.png"
    cfg = command_config("add_noise", input=source, output=output)
    with never_blocked_by(source):
        assert user_error(add_noise, cfg, capsys) == [f"error: {source}: {problem}"]
    assert not output.exists()


def test_a_fifo_among_a_folders_images_is_named(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "a.png")
    os.mkfifo(folder / "b.png")
    with never_blocked_by(folder / "b.png"), pytest.raises(SystemExit), user_errors():
        load_image_folder(folder, None, channels=1)
    assert capsys.readouterr().err.splitlines() == [
        f"error: {folder / 'b.png'}: is a FIFO (named pipe), not a file"
    ]


@pytest.mark.parametrize("record", ["summary.json", ".hydra/overrides.yaml", ".hydra/config.yaml"])
def test_export_refuses_a_run_record_that_is_a_fifo(
    run_dir: Path, tmp_path: Path, capsys, record: str
) -> None:
    path = run_dir / record
    path.unlink()
    os.mkfifo(path)
    output = tmp_path / "model.ckpt"
    with never_blocked_by(path):
        lines = user_error(export, command_config("export", run_dir=run_dir, output=output), capsys)
    assert lines == [f"error: {path}: is a FIFO (named pipe), not a file"]
    assert not output.exists()


@pytest.mark.slow
def test_report_of_a_sweep_whose_records_are_fifos_ends_and_says_so(
    run_dir: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    fifo_summary, fifo_records = sweep / "0-job", sweep / "1-job"
    for job in (fifo_summary, fifo_records):
        shutil.copytree(run_dir, job, ignore=shutil.ignore_patterns("checkpoints"))
    (fifo_summary / "summary.json").unlink()
    os.mkfifo(fifo_summary / "summary.json")
    for name in ("overrides.yaml", "config.yaml"):
        (fifo_records / ".hydra" / name).unlink()
        os.mkfifo(fifo_records / ".hydra" / name)

    result = run_command(python_module("denoise.report", str(sweep)), tmp_path, "HYDRA_FULL_ERROR")

    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 0-job | model.net.base_channels=4 | unreadable summary |" in result.stdout
    assert "| 1-job |  | completed |" in result.stdout
    assert (
        f"Unreadable summary: {fifo_summary / 'summary.json'}: is a FIFO (named pipe), not a file"
        in result.stdout.splitlines()
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "setting", "problem"),
    [("denoise.add_noise", "amount=nan", "must be a fraction in [0, 1] or a [low, high] range"),
     ("denoise.predict", "device=banana", "must be auto, cpu, cuda or cuda:N")],
    ids=["add_noise", "predict"],
)  # fmt: skip
def test_the_commands_say_it_in_one_line_with_status_1(
    picture: Path, tmp_path: Path, command: str, setting: str, problem: str
) -> None:
    command_line = python_module(command, f"input={picture}", "output=out.png", setting)
    result = run_command(command_line, tmp_path, "HYDRA_FULL_ERROR")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {setting}: {problem}"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.png"]
