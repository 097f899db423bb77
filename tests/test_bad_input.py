"""Bad input, as a careless or hostile user gives it: every case ends in the exact one-line
``error: …`` (plus at most a line with the fix), exit status 1, no traceback, nothing written
and nothing executed. In-process through the commands' own ``user_errors``; and once per
command through a real subprocess. (Image files and folders: tests/test_predict.py.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from conftest import (
    REPO,
    TINY_MODEL,
    command_config,
    fer_frame,
    python_module,
    run_command,
    user_error,
)

from denoise.benchmarks.suite import bench
from denoise.evaluation.scoring import evaluate
from denoise.inference.export_model import export
from denoise.training.run import train

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=none"]
PAYLOAD = "PWNED"


class Payload:
    """A pickle that runs code when unpickled: weights_only=True must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_checkpoint(path: Path) -> Path:
    marker = path.parent / PAYLOAD
    torch.save({"state_dict": {}, "hyper_parameters": {}, "extra": Payload(marker)}, path)
    return path


# ---------------------------------------------------------------- train: settings and data

SETTINGS = [
    ("data.batch_size=0", "error: data.batch_size=0: must be a whole number of at least 1"),
    (
        "data.eval_batch_size=-3",
        "error: data.eval_batch_size=-3: must be a whole number of at least 1 (or null)",
    ),
    (
        "data.noise.amount=1.5",
        "error: data.noise.amount=1.5: must be a fraction in [0, 1] or a [low, high] range",
    ),
    (
        "data.noise.amount=[0.5,0.2]",
        "error: data.noise.amount=[0.5,0.2]: must be a fraction in [0, 1] or a [low, high] range",
    ),
    (
        "data.noise.salt_vs_pepper=2",
        "error: data.noise.salt_vs_pepper=2: must be a number in [0, 1]",
    ),
    (
        "data.image_size=4",
        "error: data.image_size=4: must be a whole number of at least 8 (or null)",
    ),
    ("trainer.max_epochs=0", "error: trainer.max_epochs=0: must be a whole number of at least 1"),
    (
        "+trainer.max_time=00:00:1:0",
        "error: trainer.max_time=00:00:1:0: must be days:hours:minutes:seconds, two digits each "
        "(00:01:30:00 for an hour and a half)",
    ),
    (
        "trainer.limit_train_batches=0",
        "error: trainer.limit_train_batches=0: the run would train nothing; "
        "use at least 1 batch (or null for all)",
    ),
    (
        "trainer.limit_val_batches=0",
        "error: trainer.limit_val_batches=0: the run would never validate (the best checkpoint "
        "needs it); use at least 1 batch (or null for all)",
    ),
    (
        "trainer.limit_train_batches=1.5",
        "error: trainer.limit_train_batches=1.5: must be a whole number of batches >= 1 "
        "or a fraction in (0, 1]",
    ),
    ("model.net.dropout=1.0", "error: model.net.dropout=1.0: must be a number in [0, 1)"),
    (
        "model.net.base_channels=0",
        "error: model.net.base_channels=0: must be a whole number of at least 1 (or null)",
    ),
    ("model.net.depth=1", "error: model.net: depth must be at least 2, got 1"),
    (
        "model.net._target_=os.system",  # a network's class, never any other callable
        "error: model.net._target_=os.system: not an nn.Module class",
    ),
    ("model.loss=l3", "error: model.loss=l3: must be one of mse, psnr, psnr_l1"),
    (
        "model.net.attention_levels=6",
        "error: model.net: attention_levels must lie in [0, depth=3], got 6",
    ),
    ("optimizer.lr=0", "error: optimizer.lr=0: must be a number above 0"),
    ("data.noise.clean_share=2", "error: data.noise.clean_share=2: must be a number in [0, 1]"),
    ("data.noise.density_power=0", "error: data.noise.density_power=0: must be a number above 0"),
    ("init_from=absent.ckpt", "error: absent.ckpt: no such checkpoint"),
]


def test_a_later_stage_without_the_weights_of_the_stage_before_says_so(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", "experiment=faces", "stage=clean_and_flat")
    assert user_error(train, cfg, capsys) == [
        "error: init_from: stage clean_and_flat of experiment=faces starts from the weights of "
        "the stage before: pass init_from=outputs/runs/…/checkpoints/last.ckpt (that stage's "
        "run, or an exported .ckpt)"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("override", "message"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_train_refuses_a_setting_before_any_work(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys, override: str, message: str
) -> None:
    overrides = re.split(r",(?=\+?model[./=])", override)  # a pair of settings that conflict
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK, *overrides)
    assert user_error(train, cfg, capsys) == [message]
    assert not (tmp_path / "run").exists()  # not even a summary: nothing had started
    assert not (tmp_path / "cache").exists()  # the data was not even read


@pytest.mark.parametrize(
    ("overrides", "lines"),
    [
        (
            ["+model.net.global_context=true"],
            ["error: model.net.global_context: not a setting of denoise.models.unet.DenoisingUNet"],
        ),
        (
            ["+model.net.refine_channels=8"],
            [
                "error: model.net.refine_channels: not a setting of "
                "denoise.models.unet.DenoisingUNet",
                "did you mean model.net.in_channels?",
            ],
        ),
        (
            ["model=corruption_aware", "+model.net.attention_gates=true"],
            [
                "error: model.net.attention_gates: not a setting of "
                "denoise.models.corruption_aware.CorruptionAwareUNet",
                "did you mean model.net.attention_levels?",
            ],
        ),
    ],
)
def test_train_refuses_a_setting_its_network_does_not_take(
    compose_train, tiny_csv: Path, capsys, overrides: list[str], lines: list[str]
) -> None:
    """The network's constructor declares its settings: one of another network is refused
    before any work, with the nearest name it does take."""
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK, *overrides)
    assert user_error(train, cfg, capsys) == lines


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _latin1_csv(path: Path) -> Path:
    frame = fer_frame({"Training": 2, "PrivateTest": 1, "PublicTest": 1})
    frame.loc[1, "Usage"] = "Trainé"
    return _write(path, frame.to_csv(index=False).encode("latin-1"))


def _huge_number_csv(path: Path) -> Path:
    frame = fer_frame({"Training": 2, "PrivateTest": 1, "PublicTest": 1})
    values = frame.loc[1, "pixels"].split()
    values[7] = "99999999999999999999999"
    frame.loc[1, "pixels"] = " ".join(values)
    frame.to_csv(path, index=False)
    return path


CSV_CASES = [
    ("folder", lambda tmp: tmp, "{path}: is a folder; data.csv_path takes a FER-style CSV file"),
    ("missing", lambda tmp: tmp / "absent.csv", "{path}: no such file"),
    ("latin-1", lambda tmp: _latin1_csv(tmp / "latin.csv"), "{path}, row 3: not UTF-8 text "
     "(byte 0xe9); save the CSV as UTF-8"),
    ("huge number", lambda tmp: _huge_number_csv(tmp / "huge.csv"), "{path}, row 3: pixel value "
     "99999999999999999999999 is not an integer in 0-255"),
    ("binary", lambda tmp: _write(tmp / "x.csv.xz", os.urandom(300)), "{path}: cannot be read as "
     "a CSV"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in CSV_CASES], ids=[c[0] for c in CSV_CASES]
)
def test_train_names_the_file_row_and_problem_of_a_bad_csv(
    compose_train, tmp_path: Path, capsys, make, message: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = make(data)
    cfg = compose_train(f"data.csv_path={path}", *TINY_MODEL, *QUICK)
    (line,) = user_error(train, cfg, capsys)
    assert line.startswith("error: " + message.format(path=path))
    assert not (tmp_path / "cache" / "csv").exists() or not any(
        (tmp_path / "cache" / "csv").iterdir()
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- checkpoints


@pytest.fixture
def bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (file, the message after its path)."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    empty = _write(folder / "empty.ckpt", b"")
    noise = _write(folder / "noise.ckpt", os.urandom(4096))
    crafted = crafted_checkpoint(folder / "crafted.ckpt")
    other = folder / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"widget": 3}}, other)
    not_ours = "not a denoise checkpoint"
    return {
        "missing": (folder / "absent.ckpt", "no such checkpoint"),
        "folder": (folder, "is a folder; ckpt_path takes a .ckpt file"),
        "empty": (empty, f"{not_ours} (the file is empty)"),
        "random bytes": (noise, f"{not_ours} (not a file that torch.save writes)"),
        "crafted pickle": (
            crafted,
            f"{not_ours} (it holds Python objects beyond weights, which are never loaded: "
            "they could run code)",
        ),
        "another project's": (
            other,
            f"{not_ours} (its hyperparameters build no denoise model: ",
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing", "folder", "empty", "random bytes", "crafted pickle", "another project's"]
)
def test_evaluate_refuses_a_bad_checkpoint_without_running_it(
    compose_config, tiny_csv: Path, tmp_path: Path, capsys, bad_checkpoints, case: str
) -> None:
    path, message = bad_checkpoints[case]
    cfg = compose_config("evaluate", f"data.csv_path={tiny_csv}", f"ckpt_path={path}", "limit=4")
    (line,) = user_error(evaluate, cfg, capsys)
    assert line.startswith(f"error: {path}: {message}")
    assert not (tmp_path / "ckpts" / PAYLOAD).exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_resume_refuses_weights_only_and_another_architecture(
    compose_train, tiny_csv: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    exported = REPO / "denoise" / "weights" / "blind-fer2013.ckpt"
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK, f"ckpt_path={exported}")
    assert user_error(train, cfg, capsys) == [
        f"error: {exported}: holds weights only (an exported model?), not a training state to "
        "resume",
        "resume from a run's checkpoints/last.ckpt",
    ]
    last = tiny_checkpoint.parent / "last.ckpt"
    cfg = compose_train(
        f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK, "model=corruption_aware",
        "model.net.base_channels=4", "model.net.depth=3", f"ckpt_path={last}",
    )  # fmt: skip
    assert user_error(train, cfg, capsys) == [
        f"error: {last}: trained with model.net._target_=denoise.models.unet.DenoisingUNet; "
        "this run has model.net._target_=denoise.models.corruption_aware.CorruptionAwareUNet",
        "resume with the checkpoint's settings (e.g. model=corruption_aware)",
    ]


def test_resume_from_a_crafted_pickle_runs_nothing(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys
) -> None:
    crafted = crafted_checkpoint(tmp_path / "last.ckpt")
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK, f"ckpt_path={crafted}")
    (line,) = user_error(train, cfg, capsys)
    assert line.startswith(f"error: {crafted}: not a denoise checkpoint (it holds Python objects")
    assert not (tmp_path / PAYLOAD).exists()


def _run_folder(tiny_checkpoint: Path) -> Path:
    run_dir = tiny_checkpoint.parents[1]
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text("model:\n  base_channels: 4\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("[]\n")
    return run_dir


@pytest.mark.slow
def test_export_of_a_crafted_checkpoint_runs_nothing_and_writes_nothing(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    run_dir = _run_folder(tiny_checkpoint)
    crafted_checkpoint(tiny_checkpoint)  # the run's own best.ckpt, replaced by a payload
    output = tmp_path / "exported" / "model.ckpt"
    cfg = command_config("export", f"run_dir={run_dir}", f"output={output}")
    (line,) = user_error(export, cfg, capsys)
    assert line == (
        f"error: {tiny_checkpoint}: not a denoise checkpoint (it holds Python objects beyond "
        "weights, which are never loaded: they could run code)"
    )
    assert not (run_dir / "checkpoints" / PAYLOAD).exists()
    assert not output.parent.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["run_dir={tmp}/nowhere"], "error: {tmp}/nowhere: no such run folder"),
        (["run_dir={run}", "checkpoint=middle"],
         "error: checkpoint=middle: must be one of best, last"),
        (["run_dir={run}", "output={tmp}/model.pt"],
         "error: output={tmp}/model.pt: name a .ckpt file to write"),
    ],
)  # fmt: skip
def test_export_refuses_bad_settings(
    tiny_checkpoint: Path, tmp_path: Path, capsys, overrides, message
) -> None:
    run_dir = _run_folder(tiny_checkpoint)
    values = {"tmp": tmp_path, "run": run_dir}
    defaults = [f"output={tmp_path}/model.ckpt"]
    cfg = command_config("export", *defaults, *(o.format(**values) for o in overrides))
    assert user_error(export, cfg, capsys)[0] == message.format(**values)
    assert not (tmp_path / "model.ckpt").exists()


# ---------------------------------------------------------------- evaluate and bench settings

EVALUATE = [
    ("batch_size=0", "error: batch_size=0: must be a whole number of at least 1"),
    ("densities=[1.5]", "error: densities=[1.5]: must be a list of numbers in [0, 1]"),
    ("densities=[]", "error: densities=[]: must be a list of numbers in [0, 1]"),
    ("limit=0", "error: limit=0: must be a whole number of at least 1 (or null)"),
    ("split=train2", "error: split=train2: must be one of train, val, test"),
    ("amf_max_window=4", "error: amf_max_window=4: must be an odd whole number of at least 3"),
    (
        "example_densities=[0.4]",
        "error: example_densities=[0.4]: "
        "each must be one of densities=[0,0.02,0.1,0.3,0.5,0.7,0.9]",
    ),
    (
        "+peers.other=3",
        "error: peers: must map a name to a checkpoint or a shipped model, e.g. "
        "+peers.attention_unet_10=…/best.ckpt or +peers.grey=natural",
    ),
    ("+peers.other=absent.ckpt", "error: absent.ckpt: no such checkpoint"),
    ("weights=cats", "error: weights=cats: must be one of auto, faces, natural"),
    ("self_ensemble=3", "error: self_ensemble=3: must be one of 1, 2, 4, 8"),
    ("self_ensemble=true", "error: self_ensemble=true: must be one of 1, 2, 4, 8"),
]


@pytest.mark.parametrize(("override", "message"), EVALUATE, ids=[e[0] for e in EVALUATE])
def test_evaluate_refuses_a_setting_before_loading_anything(
    compose_config, tiny_csv: Path, tmp_path: Path, capsys, override: str, message: str
) -> None:
    cfg = compose_config("evaluate", f"data.csv_path={tiny_csv}", override)
    assert user_error(evaluate, cfg, capsys) == [message]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("min_seconds=0", "error: min_seconds=0: must be a number above 0"),
        ("inference_batches=[0]",
         "error: inference_batches=[0]: must be a list of batch sizes >= 1"),
        ("photos.views=[3]",
         "error: photos.views=[3]: must be a list of counts among 1, 2, 4, 8"),
        ("photos.memory_megapixels=[0]",
         "error: photos.memory_megapixels=[0]: must be a list of sizes above 0 (or [])"),
        ("photos.megapixels=0", "error: photos.megapixels=0: must be a number above 0"),
        ("csv_path=/no/such.csv", "error: csv_path=/no/such.csv: no such file"),
    ],
)  # fmt: skip
def test_bench_refuses_a_setting_before_measuring(
    compose_config, tmp_path: Path, capsys, override: str, message: str
) -> None:
    cfg = compose_config("bench", override)
    assert user_error(bench, cfg, capsys) == [message]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- through a real command line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (("denoise.train", "data.batch_size=0"),
         "error: data.batch_size=0: must be a whole number of at least 1"),
        (("denoise.evaluate", "densities=[1.5]"),
         "error: densities=[1.5]: must be a list of numbers in [0, 1]"),
        (("denoise.bench", "min_seconds=-1"), "error: min_seconds=-1: must be a number above 0"),
        (("denoise.export", "run_dir=nowhere", "output=x.ckpt"),
         "error: nowhere: no such run folder"),
        (("denoise.report", "nowhere"), "error: nowhere: no such folder"),
    ],
    ids=["train", "evaluate", "bench", "export", "report"],
)  # fmt: skip
def test_each_command_says_one_line_and_leaves_nothing(
    tmp_path: Path, args: tuple[str, ...], first_line: str
) -> None:
    result = run_command(python_module(*args), tmp_path, "HYDRA_FULL_ERROR")
    assert result.returncode in (1, 2), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    said = next(index for index, line in enumerate(lines) if line.startswith("error: "))
    assert lines[said] == first_line
    assert len(lines) - said <= 2  # the error, and at most one line with the fix
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder, no half-written file


@pytest.mark.slow
def test_full_error_shows_the_traceback_for_bug_reports(tmp_path: Path) -> None:
    command = python_module("denoise.train", "data.batch_size=0")
    result = run_command(command, tmp_path, HYDRA_FULL_ERROR="1")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "SettingError: data.batch_size=0" in result.stderr
