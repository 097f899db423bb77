"""Scaling out through the standard engines (the ``[scale]`` extra): joblib and submitit
launchers, the Slurm launcher config, the Optuna search preset, and each sweep job's share of
the machine. The plugin tests skip where the extra is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import run_command, train_command, user_error
from omegaconf import DictConfig, OmegaConf

from denoise.runtime.job_share import (
    JobShare,
    apply_share,
    claim_gpu_slot,
    jobs_side_by_side,
    share_machine,
    wants_one_gpu,
)
from denoise.runtime.search import trials_left

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def _tiny_sweep(tiny_csv: Path, tmp_path: Path, *settings: str) -> list[str]:
    """The command of a tiny sweep into ``tmp_path/sweep``."""
    return train_command(
        tiny_csv,
        tmp_path,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        "data.batch_size=8",
        *settings,
    )


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # joblib sets each worker's threads only where OMP_NUM_THREADS is unset
    completed = run_command(command, cwd, "OMP_NUM_THREADS")
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def _completed_jobs(sweep: Path) -> list[dict]:
    jobs = sorted(path for path in sweep.iterdir() if (path / "summary.json").is_file())
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert all(summary["status"] == "completed" for summary in summaries)
    for job in jobs:
        assert (job / ".hydra" / "config.yaml").is_file()
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert list(job.glob("events.out.tfevents.*"))  # TensorBoard as with one process
    assert (sweep / "report.md").is_file() and (sweep / "report.csv").is_file()
    return summaries


# ------------------------------------------------------------------ a job's share of the machine


def test_jobs_side_by_side_follow_joblibs_n_jobs() -> None:
    assert jobs_side_by_side(None, 16) == 1
    assert jobs_side_by_side({"_target_": "hydra._internal.BasicLauncher"}, 16) == 1
    assert jobs_side_by_side({"_target_": JOBLIB, "n_jobs": 4}, 16) == 4
    assert jobs_side_by_side({"_target_": JOBLIB, "n_jobs": -1}, 16) == 16
    assert jobs_side_by_side({"_target_": JOBLIB, "n_jobs": -2}, 16) == 15
    assert jobs_side_by_side({"_target_": JOBLIB, "n_jobs": -32}, 16) == 1


def test_only_one_gpu_runs_claim_a_slot() -> None:
    assert wants_one_gpu({"accelerator": "auto", "devices": 1}, gpus=4)
    assert wants_one_gpu({"accelerator": "gpu", "devices": "1"}, gpus=2)
    assert not wants_one_gpu({"accelerator": "auto", "devices": 1}, gpus=0)
    assert not wants_one_gpu({"accelerator": "cpu", "devices": 1}, gpus=4)
    assert not wants_one_gpu({"accelerator": "gpu", "devices": 2}, gpus=4)  # DDP takes its own
    assert not wants_one_gpu({"accelerator": "gpu", "devices": "auto"}, gpus=4)


def test_cpu_jobs_side_by_side_share_the_cores(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("denoise.runtime.job_share.machine_cores", lambda: 8)
    launcher = {"_target_": JOBLIB, "n_jobs": 4}
    trainer = {"accelerator": "cpu", "devices": 1}
    with share_machine(launcher, trainer, tmp_path) as share:
        assert share == JobShare(threads=2, gpu=None)
    with share_machine(None, trainer, tmp_path) as share:
        assert share == JobShare()  # one process: nothing changes
    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    with share_machine({"_target_": local, "cpus_per_task": 3}, trainer, tmp_path) as share:
        assert share == JobShare(threads=3)  # what the submitit job asked for
    with share_machine({"_target_": local, "cpus_per_task": None}, trainer, tmp_path) as share:
        assert share == JobShare()
    threads = __import__("torch").get_num_threads()
    try:
        assert apply_share(JobShare(threads=1), num_workers=4) == 1
        assert __import__("torch").get_num_threads() == 1
        assert apply_share(JobShare(), num_workers=4) == 4
    finally:
        __import__("torch").set_num_threads(threads)


def test_jobs_per_gpu_must_be_a_whole_number_above_zero(compose_train, capsys) -> None:
    from denoise.training.run import train

    lines = user_error(train, compose_train("jobs_per_gpu=0"), capsys)
    assert lines == ["error: jobs_per_gpu=0: must be a whole number of at least 1 (or null)"]


def test_gpu_slots_give_each_job_its_own_gpu_and_make_the_next_one_wait(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("denoise.runtime.job_share.WAIT_POLL_S", 0.05)
    claimed: list[int] = []
    with claim_gpu_slot(tmp_path, gpus=2) as first, claim_gpu_slot(tmp_path, gpus=2) as second:
        assert {first, second} == {0, 1}

        def third_job() -> None:
            with claim_gpu_slot(tmp_path, gpus=2) as gpu:
                claimed.append(gpu)

        waiting = threading.Thread(target=third_job)
        waiting.start()
        time.sleep(0.3)
        assert claimed == []  # both GPUs are taken: it waits
    waiting.join(timeout=5)
    assert claimed == [0]  # a freed slot goes to the waiting job
    with (
        claim_gpu_slot(tmp_path, gpus=1, jobs_per_gpu=2) as a,
        claim_gpu_slot(tmp_path, gpus=1, jobs_per_gpu=2) as b,
    ):
        assert a == b == 0  # two slots on one GPU


def test_a_gpu_job_side_by_side_gets_the_cores_of_the_jobs_that_can_run(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("denoise.runtime.job_share.machine_cores", lambda: 16)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    launcher = {"_target_": JOBLIB, "n_jobs": -1}  # 16 jobs at once, but only 2 GPUs
    with share_machine(launcher, {"accelerator": "auto", "devices": 1}, tmp_path) as share:
        assert share == JobShare(threads=8, gpu=0)
        assert (tmp_path / ".gpu_slots" / "slot0.lock").is_file()


# ---------------------------------------------------------------------------------- launchers


@pytest.mark.slow
def test_joblib_runs_a_sweep_side_by_side_with_a_share_of_the_cores_each(
    tiny_csv: Path, tmp_path: Path
) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    command = _tiny_sweep(
        tiny_csv, tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "data.noise.amount=0.05,0.3",
    )  # fmt: skip
    said = _run(command, tmp_path)
    assert "Joblib.Parallel(n_jobs=2" in said.stdout + said.stderr
    summaries = _completed_jobs(tmp_path / "sweep")
    assert len(summaries) == 2
    cores = len(os.sched_getaffinity(0))
    assert [summary["torch_threads"] for summary in summaries] == [max(1, cores // 2)] * 2
    pids = {summary["process"]["pid"] for summary in summaries}
    assert os.getpid() not in pids  # the jobs ran in joblib's workers


@pytest.mark.slow
def test_submitit_local_runs_a_sweep_each_job_in_its_folder_with_the_report(
    tiny_csv: Path, tmp_path: Path
) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    command = _tiny_sweep(
        tiny_csv, tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
        "data.noise.amount=0.05,0.3",
    )  # fmt: skip
    _run(command, tmp_path)
    sweep = tmp_path / "sweep"
    summaries = _completed_jobs(sweep)
    assert len(summaries) == 2
    assert [summary["torch_threads"] for summary in summaries] == [1, 1]  # cpus_per_task=1
    assert {summary["overrides"][-1] for summary in summaries} == {
        "data.noise.amount=0.05",
        "data.noise.amount=0.3",
    }
    job_logs = [path for path in (sweep / ".submitit").iterdir() if path.name.isdigit()]
    assert len(job_logs) == 2  # submitit's logs, one folder per job
    report = (sweep / "report.csv").read_text()
    assert report.count(",completed,") == 2


def test_slurm_config_composes_with_ddp_into_one_task_per_gpu(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch
) -> None:
    submitit = pytest.importorskip("submitit")
    cfg = compose_config(
        "train",
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.array_parallelism=3",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    single = compose_config("train", "hydra/launcher=slurm")
    assert OmegaConf.select(single, "hydra.launcher.tasks_per_node") == 1

    # What sbatch would get: submitit needs srun on the PATH to build a Slurm executor.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    generic = {"timeout_min", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task"}
    executor.update_parameters(
        mem_gb=launcher["mem_gb"],
        **{key: launcher[key] for key in generic},
        **{
            f"slurm_{key}": launcher[key]
            for key in ("partition", "array_parallelism", "signal_delay_s")
        },
    )
    script = executor._executor._make_submission_file_text("python -m denoise.train", "0")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu"):
        assert f"#SBATCH {line}" in script
    assert "srun" in script  # each task (rank) is started by srun, which Lightning detects


# ---------------------------------------------------------------------------------- Optuna


def test_search_preset_composes_the_optuna_sweeper_with_its_study_in_the_sweep_folder(
    compose_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    cfg = compose_config("train", "hparams_search=denoiser_optuna", f"hydra.sweep.dir={sweep}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.storage == f"sqlite:///{sweep}/optuna.db"
    assert sweeper.n_trials == 20 and sweeper.direction == "maximize"  # no study yet: all 20
    assert set(sweeper.params) == {
        "optimizer.lr",
        "model.net.base_channels",
        "model.net.dropout",
        "model.loss",
    }
    assert cfg.optimized_metric == "val/psnr"


def test_trials_left_counts_only_finished_trials(tmp_path: Path, capsys) -> None:
    optuna = pytest.importorskip("optuna")
    database = tmp_path / "optuna.db"
    assert trials_left(str(database), "denoiser", 5) == 5  # no study yet
    study = optuna.create_study(study_name="denoiser", storage=f"sqlite:///{database}")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    study.ask()  # a trial that was running when the search stopped
    assert trials_left(str(database), "denoiser", 5) == 3
    assert trials_left(str(database), "other", 5) == 5
    assert trials_left(str(database), "denoiser", 1) == 0
    capsys.readouterr()  # Optuna's own log lines so far
    with pytest.raises(SystemExit):
        trials_left(str(database), "denoiser", "abc")  # one line, not a traceback
    assert capsys.readouterr().err.splitlines() == [
        "error: search.trials=abc: must be a whole number of at least 1"
    ]


@pytest.mark.slow
def test_a_three_trial_search_runs_stores_its_study_and_resumes(
    tiny_csv: Path, tmp_path: Path
) -> None:
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    base = _tiny_sweep(
        tiny_csv, tmp_path, "hparams_search=denoiser_optuna",
        "model.net.base_channels=choice(4,8)",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )  # fmt: skip
    _run([*base, "search.trials=2"], tmp_path)  # as if stopped after 2 of 3 trials
    sweep = tmp_path / "sweep"
    storage = f"sqlite:///{sweep}/optuna.db"
    study = optuna.load_study(study_name="denoiser", storage=storage)
    assert len(study.trials) == 2

    said = _run([*base, "search.trials=3"], tmp_path)  # the same search, to 3: one trial more
    study = optuna.load_study(study_name="denoiser", storage=storage)
    values = [trial.value for trial in study.trials]
    assert len(values) == 3 and all(value is not None for value in values)
    summaries = _completed_jobs(sweep)
    assert sorted(round(s["best_epoch"]["val/psnr"], 4) for s in summaries) == sorted(
        round(value, 4) for value in values
    )
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(values))
    assert "finished trials of 3" in said.stdout + said.stderr
