"""End to end: Hydra config -> train -> test the best checkpoint -> outputs a person uses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import TINY_MODEL, fer_frame, run_command, train_command
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from denoise.data.datamodule import FERDataModule
from denoise.data.fer_csv import CSVFormatError
from denoise.models.metrics import image_metrics
from denoise.models.module import DenoisingModule
from denoise.training.run import train
from denoise.training.summary import read_summary

QUICK = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "data.batch_size=8",
    "data.eval_batch_size=8",
]


def _events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_train_writes_checkpoints_logs_summary_and_returns_the_metric(
    compose_train, tiny_csv: Path, tmp_path: Path, capsys, caplog
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK)
    run_dir = Path(cfg.paths.output_dir)
    caplog.set_level(logging.INFO, logger="denoise")

    value = train(cfg)

    messages = [record.getMessage() for record in caplog.records]
    assert f"This run writes into {run_dir}" in messages[0]  # said before any work
    listing = messages[-1].splitlines()
    assert listing[0] == f"Outputs of this run in {run_dir}:"
    listed = {line.split()[0] for line in listing[1:]}
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt", "summary.json"} <= listed

    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert [epoch["epoch"] for epoch in summary["val_history"]] == [0, 1]
    assert value == pytest.approx(summary["best_epoch"]["val/psnr"])
    assert Path(summary["best_checkpoint"]) == run_dir / "checkpoints" / "best.ckpt"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    test = summary["test"]
    assert {"test/psnr", "test/ssim", "test/mse", "test/noisy_psnr"} <= test.keys()
    assert 18 < test["test/noisy_psnr"] < 26  # 2% salt-and-pepper on mid-grey faces

    table = capsys.readouterr().out
    assert "noisy input" in table and f"{test['test/psnr']:.2f}" in table

    events = _events(run_dir)
    tags = events.Tags()
    assert {"val/psnr", "val/ssim", "val/loss", "train/loss_epoch", "test/psnr"} <= set(
        tags["scalars"]
    )
    assert [len(events.Scalars("val/psnr"))] == [2]
    (preview,) = tags["images"]
    assert [image.step for image in events.Images(preview)] == [0, 1]
    assert (run_dir / "hparams.yaml").exists()
    hparams = _hparams_plugin_data(run_dir)
    assert b"data/noise/amount" in hparams and b"hp/test_psnr" in hparams


def _hparams_plugin_data(run_dir: Path) -> bytes:
    """The raw HPARAMS-tab records TensorBoard reads (session start and experiment)."""
    return b"".join(path.read_bytes() for path in run_dir.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_best_checkpoint_reloads_alone_and_reproduces_the_test_psnr(
    compose_train, tiny_csv: Path
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, *QUICK)
    train(cfg)
    summary = read_summary(cfg.paths.output_dir)

    model = DenoisingModule.load_from_checkpoint(
        summary["best_checkpoint"], map_location="cpu"
    ).eval()
    datamodule = FERDataModule(
        csv_path=str(tiny_csv), cache_dir=cfg.paths.cache_dir, eval_batch_size=5
    )
    datamodule.setup("test")
    metrics = image_metrics()
    for batch in datamodule.test_dataloader():
        pair = datamodule.on_after_batch_transfer(batch, 0)
        metrics.update(model.denoise(pair["noisy"]), pair["clean"])

    assert metrics.compute()["psnr"].item() == pytest.approx(summary["test"]["test/psnr"], abs=1e-3)
    assert model.hparams.net["base_channels"] == 4 and model.hparams.optimizer["lr"] == 1e-3


@pytest.mark.slow
def test_seed_makes_a_run_repeatable(compose_train, tiny_csv: Path, tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        cfg = compose_train(
            f"data.csv_path={tiny_csv}",
            *TINY_MODEL,
            *QUICK,
            "trainer.max_epochs=1",
            output_dir=tmp_path / name,
        )
        results.append(train(cfg))
    assert results[0] == pytest.approx(results[1], abs=1e-5)


def test_fast_dev_run_preset_trains_without_logs_or_checkpoints(
    compose_train, tiny_csv: Path
) -> None:
    cfg = compose_train(f"data.csv_path={tiny_csv}", *TINY_MODEL, "debug=fast")
    train(cfg)
    summary = read_summary(cfg.paths.output_dir)
    assert summary["status"] == "completed" and summary["best_checkpoint"] is None
    assert "test/psnr" in summary["test"]


def test_reference_preset_composes_the_notebook_setup(compose_train) -> None:
    cfg = compose_train("experiment=reference")
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.batch_size) == (128, 3, 16)
    assert (cfg.model.net.in_channels, cfg.model.net.out_channels, cfg.model.net.base_channels) == (
        3,
        3,
        32,
    )
    assert cfg.data.noise.amount == 0.02 and cfg.trainer.max_epochs == 5
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3


@pytest.mark.slow
def test_reference_preset_trains_at_128px_with_three_channels(
    compose_train, tiny_csv: Path
) -> None:
    cfg = compose_train(
        "experiment=reference", f"data.csv_path={tiny_csv}", *TINY_MODEL, "debug=fast"
    )
    train(cfg)
    summary = read_summary(cfg.paths.output_dir)
    assert summary["status"] == "completed"
    assert 18 < summary["test"]["test/noisy_psnr"] < 26


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(
    compose_train, tiny_csv: Path, tmp_path: Path
) -> None:
    first = compose_train(
        f"data.csv_path={tiny_csv}",
        *TINY_MODEL,
        *QUICK,
        "trainer.max_epochs=1",
        output_dir=tmp_path / "first",
    )
    train(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = compose_train(
        f"data.csv_path={tiny_csv}",
        *TINY_MODEL,
        *QUICK,
        f"ckpt_path={last}",
        output_dir=tmp_path / "resumed",
    )
    train(resumed)
    summary = read_summary(tmp_path / "resumed")
    assert [epoch["epoch"] for epoch in summary["val_history"]] == [0, 1]
    assert summary["epochs_completed"] == 2


def test_bad_csv_stops_before_training_and_marks_the_run_failed(
    compose_train, tmp_path: Path
) -> None:
    frame = fer_frame({"Training": 4, "PrivateTest": 2, "PublicTest": 2})
    frame.loc[2, "pixels"] = "1 2 3"
    path = tmp_path / "broken.csv"
    frame.to_csv(path, index=False)
    cfg = compose_train(f"data.csv_path={path}", *TINY_MODEL, *QUICK)

    with pytest.raises(CSVFormatError, match=r"broken\.csv, row 4: 'pixels' has 3 values"):
        train(cfg)

    summary = read_summary(cfg.paths.output_dir)
    assert summary["status"] == "failed" and "row 4" in summary["error"]
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.slow
def test_multirun_writes_one_folder_per_job_named_by_overrides(
    tiny_csv: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    command = train_command(
        tiny_csv,
        tmp_path,
        "-m",
        "data.noise.amount=0.05,0.3",
        f"hydra.sweep.dir={sweep_dir}",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "data.batch_size=8",
    )
    completed = run_command(command, tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    said = completed.stdout + completed.stderr
    assert f"This sweep writes into {sweep_dir.resolve()}" in said
    assert (
        f"Wrote report.md, report.csv, report_psnr_vs_amount.png in {sweep_dir.resolve()}" in said
    )

    jobs = sorted(path for path in sweep_dir.iterdir() if path.is_dir())
    assert [job.name.split(",")[0] for job in jobs] == [
        "0-data.batch_size=8",
        "1-data.batch_size=8",
    ]
    assert "data.noise.amount=0.05" in jobs[0].name and "data.noise.amount=0.3" in jobs[1].name
    noisy_psnr = []
    for job in jobs:
        summary = read_summary(job)
        assert summary["status"] == "completed"
        assert (job / ".hydra" / "config.yaml").exists() and (
            job / "checkpoints" / "best.ckpt"
        ).exists()
        assert list(job.glob("events.out.tfevents.*"))
        noisy_psnr.append(summary["test"]["test/noisy_psnr"])
    assert noisy_psnr[0] > noisy_psnr[1] + 5  # 5% noise is far milder than 30%
    assert not (tmp_path / "outputs").exists()
    assert (sweep_dir / "report.md").exists()  # written by the SweepReport Hydra callback
    report = (sweep_dir / "report.md").read_text()
    assert all(f"| {job.name} |" in report for job in jobs)
    assert report.count("| completed |") == 2
