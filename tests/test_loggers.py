"""Tracking beyond TensorBoard: logger=csv and logger=mlflow get the same params and final
``hp/`` metrics as TensorBoard, each job its own MLflow run, closed even when the job fails."""

from __future__ import annotations

import csv
import errno
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_MODEL, run_command, train_command
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from denoise.files.outputs import discard_unused_output_dir
from denoise.runtime.errors import user_errors
from denoise.training import tracking
from denoise.training.checkpoint_io import AtomicCheckpointIO
from denoise.training.run import train
from denoise.training.summary import RunSummary, read_summary

QUICK = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "trainer.enable_progress_bar=false",
]
ONE_EPOCH = ["trainer.max_epochs=1", *QUICK[1:]]
INSTALL = 'pip install -e ".[scale]"'


@pytest.fixture(autouse=True)
def _own_tracking(monkeypatch):
    """MLflow's default store in the run folder (not a developer's server); and no logger of
    one test left open into the next."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    yield
    tracking.close_open_loggers()


def expected_hp(summary: dict) -> dict[str, float]:
    """The hp/ metrics a run's summary.json implies: best epoch's val metrics, then test."""
    return tracking.final_metrics({**summary["best_epoch"], **summary["test"]})


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def mlflow_runs(run_dir: Path) -> list:
    """Every run in the job folder's own MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    ids = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiment_ids=ids)


@pytest.mark.slow
def test_csv_logger_writes_epoch_metrics_final_hp_row_and_config_sections(
    compose_train, tiny_csv: Path
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", "logger=csv", *TINY_MODEL, *QUICK)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    summary = read_summary(run_dir)

    rows = csv_rows(run_dir)
    val_psnr = [float(row["val/psnr"]) for row in rows if row["val/psnr"]]
    assert val_psnr == pytest.approx([epoch["val/psnr"] for epoch in summary["val_history"]])
    assert any(row["train/loss_epoch"] for row in rows) and any(row["test/psnr"] for row in rows)
    hp = {name: float(value) for name, value in rows[-1].items() if name.startswith("hp/")}
    assert hp == pytest.approx(expected_hp(summary))
    assert {"hp/val_psnr", "hp/test_psnr", "hp/test_noisy_psnr"} <= hp.keys()

    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert {"seed", "data", "model", "trainer"} <= hparams.keys()
    assert hparams["data"]["noise"]["amount"] == cfg.data.noise.amount
    assert hparams["model"]["net"]["base_channels"] == 4 and hparams["trainer"]["max_epochs"] == 2


@pytest.mark.slow
def test_every_logger_gets_the_same_params_and_hp_metrics(compose_train, tiny_csv: Path) -> None:
    pytest.importorskip("mlflow")
    cfg = compose_train(
        f"data.csv_path={tiny_csv}", "logger=[tensorboard,csv,mlflow]", *TINY_MODEL, *ONE_EPOCH
    )
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    expected = expected_hp(read_summary(run_dir))

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tensorboard = {name: events.Scalars(name)[-1].value for name in expected}
    assert tensorboard == pytest.approx(expected, rel=1e-6)  # TensorBoard keeps float32
    hparams_tab = b"".join(path.read_bytes() for path in run_dir.glob("events.out.tfevents.*"))
    assert b"data/noise/amount" in hparams_tab and b"hp/test_psnr" in hparams_tab

    last_row = csv_rows(run_dir)[-1]
    assert {name: float(last_row[name]) for name in expected} == pytest.approx(expected)

    (run,) = mlflow_runs(run_dir)
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    hp = {name: value for name, value in run.data.metrics.items() if name.startswith("hp/")}
    assert hp == pytest.approx(expected)
    assert run.data.params["data/noise/amount"] == str(cfg.data.noise.amount)
    assert run.data.params["seed"] == "42" and run.data.params["model/net/depth"] == "3"
    assert run.data.tags["output_dir"] == str(run_dir)
    # the run folder holds the whole store; MLflow's global URI is back as it was
    assert not (Path.cwd() / "mlruns").exists() and "MLFLOW_TRACKING_URI" not in os.environ


def _disk_full(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _checkpoint_disk_full(monkeypatch) -> None:
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        raise _disk_full(path)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save_checkpoint)


def _summary_disk_full_after_test(monkeypatch) -> None:
    update = RunSummary.update

    def failing_update(self, **fields):
        if "test" in fields:
            raise _disk_full(self.path)
        update(self, **fields)

    monkeypatch.setattr(RunSummary, "update", failing_update)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fail", [_checkpoint_disk_full, _summary_disk_full_after_test], ids=["in_fit", "after_test"]
)
def test_a_failed_job_leaves_its_mlflow_run_failed_not_running(
    compose_train, tiny_csv: Path, monkeypatch, fail
) -> None:
    """A full disk, when Lightning saves a checkpoint (Lightning closes the loggers) or when
    summary.json takes the test metrics (tracking closes them, before the next job or at
    exit); either way after the MLflow run was created."""
    pytest.importorskip("mlflow")
    cfg = compose_train(f"data.csv_path={tiny_csv}", "logger=mlflow", *TINY_MODEL, *ONE_EPOCH)
    run_dir = Path(cfg.paths.output_dir)
    fail(monkeypatch)

    with pytest.raises(OSError, match="No space left"):
        train(cfg)
    assert read_summary(run_dir)["status"] == "failed"
    (run,) = mlflow_runs(run_dir)
    assert run.info.status != "RUNNING"

    tracking.open_loggers(compose_train("logger=none"))  # the next job of a sweep
    (run,) = mlflow_runs(run_dir)
    assert run.info.status == "FAILED"
    assert "MLFLOW_TRACKING_URI" not in os.environ


@pytest.mark.parametrize(
    ("missing", "problem"),
    [
        ("mlflow", "mlflow is not installed"),
        (
            "alembic",
            "its sqlite tracking store needs sqlalchemy and alembic, which are not installed",
        ),
    ],
    ids=["mlflow", "alembic"],
)
def test_logger_mlflow_without_its_packages_is_one_line_before_any_work(
    compose_train, tiny_csv: Path, tmp_path: Path, monkeypatch, capsys, missing, problem
) -> None:
    if missing != "mlflow":
        pytest.importorskip("mlflow")
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    cfg = compose_train(f"data.csv_path={tiny_csv}", "logger=mlflow", *TINY_MODEL, *QUICK)
    capsys.readouterr()

    with pytest.raises(SystemExit) as stopped, user_errors(cleanup=discard_unused_output_dir):
        train(cfg)

    assert stopped.value.code == 1
    assert capsys.readouterr().err.splitlines() == [f"error: logger=mlflow: {problem} ({INSTALL})"]
    assert not Path(cfg.paths.output_dir).exists()  # no run folder left behind
    assert not (tmp_path / "cache").exists()  # the data was never read


@pytest.mark.slow
def test_multirun_with_mlflow_gives_each_job_its_own_finished_run(
    tiny_csv: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow")
    sweep_dir = tmp_path / "sweep"
    command = train_command(
        tiny_csv,
        tmp_path,
        "-m",
        "data.noise.amount=0.05,0.3",
        "logger=mlflow",
        f"hydra.sweep.dir={sweep_dir}",
        "trainer.accelerator=cpu",
        "trainer.enable_model_summary=false",
        "data.num_workers=0",
        *ONE_EPOCH,
    )
    completed = run_command(command, tmp_path, "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")
    assert completed.returncode == 0, completed.stderr[-3000:]

    jobs = sorted(path for path in sweep_dir.iterdir() if path.is_dir())
    assert len(jobs) == 2
    for job, amount in zip(jobs, ("0.05", "0.3"), strict=True):
        (run,) = mlflow_runs(job)  # its own store holds its own run, and only that one
        assert run.info.status == "FINISHED"
        assert run.info.run_name == job.name and f"data.noise.amount={amount}" in job.name
        assert run.data.params["data/noise/amount"] == amount
        hp = {name: value for name, value in run.data.metrics.items() if name.startswith("hp/")}
        assert hp == pytest.approx(expected_hp(read_summary(job)))
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "outputs").exists()
