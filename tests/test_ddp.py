"""Distributed data-parallel training (``trainer=ddp``): two CPU processes (gloo) write one
run folder, and score the whole validation split exactly once, as one process does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import lightning as L
import pytest
from conftest import TINY_MODEL, child_env, fer_frame, run_command, train_command

from denoise.data.datamodule import EvaluationShard, FERDataModule
from denoise.models.module import DenoisingModule
from denoise.runtime.distributed import is_rank_zero_process, rank_overrides
from denoise.runtime.errors import SettingError
from denoise.training.run import train
from denoise.training.summary import read_summary

# Odd validation and test splits: 2 processes get 3 and 2 images. Lightning's
# DistributedSampler would repeat the first image to give each 3, and so move the mean.
ODD_SPLITS = {"Training": 32, "PrivateTest": 5, "PublicTest": 5}
EVAL_BATCH = 2  # 3 images: 2 batches, 2 images: 1 batch (uneven batch counts)
# Launcher variables of an enclosing job (Slurm, torchrun) would change who starts what.
LAUNCHER_PREFIXES = ("SLURM_", "TORCHELASTIC_", "LSB_", "JSM_", "PMI_", "OMPI_")
LAUNCHER_KEYS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_PORT")


def _launcher_keys() -> list[str]:
    """The enclosing launcher's variables, which a child must not inherit."""
    return [*LAUNCHER_KEYS, *(key for key in os.environ if key.startswith(LAUNCHER_PREFIXES))]


@pytest.fixture
def odd_csv(tmp_path: Path) -> Path:
    path = tmp_path / "odd.csv"
    fer_frame(ODD_SPLITS).to_csv(path, index=False)
    return path


def test_evaluation_shards_hold_every_image_once_rank_zero_first() -> None:
    for count in range(1, 12):
        for processes in range(1, count + 1):
            shards = [list(EvaluationShard(range(count), processes, r)) for r in range(processes)]
            flat = [index for shard in shards for index in shard]
            assert flat == list(range(count))  # contiguous, nothing repeated
            sizes = [len(EvaluationShard(range(count), processes, r)) for r in range(processes)]
            assert sizes == [len(shard) for shard in shards]
            assert max(sizes) - min(sizes) <= 1 and sizes[0] == max(sizes)


def test_only_rank_zero_writes_and_other_ranks_get_no_hydra_files() -> None:
    assert is_rank_zero_process({})
    assert is_rank_zero_process({"LOCAL_RANK": "0", "NODE_RANK": "0", "WORLD_SIZE": "2"})
    assert not is_rank_zero_process({"LOCAL_RANK": "1"})  # started by Lightning's ddp
    assert not is_rank_zero_process({"LOCAL_RANK": "0", "NODE_RANK": "1"})  # another node
    assert not is_rank_zero_process({"NODE_RANK": "1"})  # a node started by hand
    assert not is_rank_zero_process({"RANK": "3", "LOCAL_RANK": "0"})  # torchrun
    assert is_rank_zero_process({"RANK": "0", "SLURM_PROCID": "5"})  # RANK comes first
    assert not is_rank_zero_process({"SLURM_PROCID": "1"})
    assert rank_overrides(["x=1"], {}) == []
    child = ["x=1", 'hydra.run.dir="/r"', "hydra.job.name=train_ddp_process_1"]
    assert rank_overrides([*child, "hydra.output_subdir=null"], {"LOCAL_RANK": "1"}) == [
        "hydra/job_logging=stdout"
    ]
    assert rank_overrides(["hydra/job_logging=none"], {"RANK": "1"}) == ["hydra.output_subdir=null"]


def test_a_split_smaller_than_the_processes_is_refused_before_the_trainer(
    compose_train, tmp_path: Path
) -> None:
    csv = tmp_path / "one_val.csv"
    fer_frame({"Training": 8, "PrivateTest": 1, "PublicTest": 4}).to_csv(csv, index=False)
    cfg = compose_train(f"data.csv_path={csv}", "trainer=ddp", "trainer.devices=2", *TINY_MODEL)
    with pytest.raises(SettingError, match="the val split has 1 image, fewer than the 2 proc"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_run_and_scores_the_whole_split_once(
    odd_csv: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = train_command(
        odd_csv,
        tmp_path,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",  # the one-process check below runs in float32 too
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false",
        "data.batch_size=8",
        f"data.eval_batch_size={EVAL_BATCH}",
    )
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=child_env(*_launcher_keys()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    said = stdout + stderr
    assert "All distributed processes registered. Starting with 2 processes" in said
    assert "distributed_backend=gloo" in said
    assert said.count(f"This run writes into {run_dir}") == 1  # rank zero's words only
    assert said.count("Test metrics of the best checkpoint:") == 1
    assert said.count(f"Outputs of this run in {run_dir}:") == 1

    # One run folder (Lightning's second process joined it) and the data cache, nothing else.
    assert {path.name for path in tmp_path.iterdir()} == {"odd.csv", "cache", "run"}
    files = {path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*") if path.is_file()}
    assert {
        ".hydra/config.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "summary.json",
        "train.log",
    } <= files
    assert [name for name in files if name.endswith(".log")] == ["train.log"]  # no
    # train_ddp_process_1.log: rank one logs to the console only
    assert len([name for name in files if name.startswith("events.out.tfevents.")]) >= 1

    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["process"]["pid"] == process.pid  # written by rank zero, not rank one
    assert summary["epochs_completed"] == 1 and len(summary["val_history"]) == 1
    assert {"test/psnr", "test/ssim", "test/mse"} <= summary["test"].keys()
    two_processes = summary["val_history"][0]

    # The same checkpoint validated by one process, on the same data settings.
    model = DenoisingModule.load_from_checkpoint(summary["best_checkpoint"], weights_only=True)
    data = FERDataModule(
        csv_path=str(odd_csv),
        cache_dir=str(tmp_path / "cache"),
        batch_size=8,
        eval_batch_size=EVAL_BATCH,
        num_workers=0,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    one_process = trainer.validate(model, datamodule=data, verbose=False)[0]
    for name in ("val/psnr", "val/ssim", "val/mse", "val/loss", "val/noisy_psnr"):
        assert two_processes[name] == pytest.approx(one_process[name], abs=1e-4), name
    one_process = trainer.test(model, datamodule=data, verbose=False)[0]
    for name in ("test/psnr", "test/ssim", "test/mse", "test/loss", "test/noisy_psnr"):
        assert summary["test"][name] == pytest.approx(one_process[name], abs=1e-4), name


@pytest.mark.slow
def test_ddp_in_a_multirun_sweep_stops_at_once_with_one_line(odd_csv: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = train_command(
        odd_csv,
        tmp_path,
        "-m",
        "data.noise.amount=0.05,0.3",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    completed = run_command(command, tmp_path, *_launcher_keys())
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, completed.stderr[-3000:]
    assert errors[0].startswith("error: trainer.strategy=ddp with trainer.devices=2 ")
    assert "-m sweep" in errors[0]
    assert "Slurm launcher" in errors[0] and "trainer.strategy=ddp_spawn" in errors[0]
    said = completed.stdout + completed.stderr
    assert "Initializing distributed" not in said  # no process was started
    assert {path.name for path in tmp_path.iterdir()} <= {"odd.csv", "cache", "sweep"}
    assert not list(sweep_dir.rglob("*.ckpt"))
    assert len([path for path in sweep_dir.iterdir() if path.is_dir()]) == 1  # job 0 only
