"""denoise.evaluate: every method on the same noisy images, tables, files and plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import smooth_images

from denoise.evaluation.scoring import NOISY, evaluate, evaluate_denoisers, example_densities

GREY = torch.full((20, 1, 16, 16), 0.5)
SMOOTH = torch.from_numpy(smooth_images(24, 32, 32)).unsqueeze(1).float() / 255


def test_noisy_input_scores_match_the_noise_density() -> None:
    result = evaluate_denoisers(GREY, {}, [0.1, 0.3], seed=0)
    for density in (0.1, 0.3):
        # each corrupted pixel is off by 0.5, so MSE = density / 4
        expected = -10 * math.log10(density / 4)
        assert result.metrics[NOISY][density]["psnr"] == pytest.approx(expected, abs=0.5)
        assert result.metrics[NOISY][density]["mse"] == pytest.approx(density / 4, rel=0.1)


def test_every_method_sees_the_same_noise_whatever_the_batching() -> None:
    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}

    def recorder(name: str):
        def identity(noisy: torch.Tensor) -> torch.Tensor:
            seen[name].append(noisy)
            return noisy

        return identity

    small_batches = evaluate_denoisers(SMOOTH, {"a": recorder("a")}, [0.1], seed=3, batch_size=5)
    other_list = evaluate_denoisers(SMOOTH, {"b": recorder("b")}, [0.5, 0.1], seed=3, batch_size=64)

    assert torch.equal(torch.cat(seen["a"]), torch.cat(seen["b"])[len(SMOOTH) :])
    assert small_batches.metrics["a"][0.1] == pytest.approx(other_list.metrics["b"][0.1])
    assert small_batches.metrics["a"][0.1] == pytest.approx(small_batches.metrics[NOISY][0.1])


def test_a_perfect_switch_beats_the_noisy_input_and_tables_have_the_right_shape() -> None:
    def restore_grey(noisy: torch.Tensor) -> torch.Tensor:
        return torch.where((noisy == 0) | (noisy == 1), torch.full_like(noisy, 0.5), noisy) + 1e-3

    result = evaluate_denoisers(GREY, {"oracle": restore_grey}, [0.1, 0.5, 0.9], seed=1)

    assert result.metrics["oracle"][0.9]["psnr"] == pytest.approx(60.0, abs=0.01)
    table = result.table("psnr", 2).splitlines()
    assert table[0] == "| method | 10% | 50% | 90% |"
    assert [line.split(" | ")[0] for line in table[2:]] == [f"| {NOISY}", "| oracle"]
    assert result.frame().shape == (6, 5)


@pytest.mark.slow
def test_evaluate_command_writes_tables_plots_and_beats_noise(
    compose_config, tiny_csv: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    cfg = compose_config(
        "evaluate",
        f"ckpt_path={tiny_checkpoint}",
        f"data.csv_path={tiny_csv}",
        "densities=[0.1,0.5]",
        "example_densities=[0.5]",
        "example_count=3",
        "amf_max_window=7",
        "device=cpu",
        output_dir=tmp_path / "evaluation",
    )

    evaluate(cfg)

    out = tmp_path / "evaluation"
    frame = pd.read_csv(out / "metrics.csv")
    methods = [
        NOISY,
        "median 3x3",
        "adaptive median",
        "switching median 3x3",
        "switching median 3x3, clean neighbours",
        "biharmonic inpainting",
        "U-Net",
    ]
    assert sorted(frame["method"].unique()) == sorted(methods)
    assert sorted(frame["density"].unique()) == [0.1, 0.5]
    psnr = frame.set_index(["method", "density"])["psnr"]
    assert psnr["switching median 3x3", 0.1] > psnr[NOISY, 0.1] + 5
    assert psnr["adaptive median", 0.5] > psnr[NOISY, 0.5] + 5
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["images"] == 16 and saved["metrics"]["U-Net"]["0.5"]["psnr"] == pytest.approx(
        psnr["U-Net", 0.5]
    )
    assert set(saved["seconds"]) == set(methods)
    assert saved["self_ensemble"] == 1  # a checkpoint of your own: one pass
    for image in ("metrics_vs_density.png", "examples.png", "diagnostic.png"):
        assert (out / image).stat().st_size > 5_000
    diagnostic = pd.read_csv(out / "diagnostic.csv").set_index(["method", "density"])
    assert diagnostic.loc[("U-Net", 0.5), "share noise"] > 0.5  # noise dominates at 50%
    assert diagnostic.loc[("switching median 3x3", 0.1), "rms other"] == 0.0  # never touched
    assert "## biharmonic inpainting" in (out / "diagnostic.md").read_text()
    assert set(saved["diagnostic"]) == set(methods) - {NOISY}
    printed = capsys.readouterr().out
    assert "| method | 10% | 50% |" in printed and "| U-Net |" in printed
    assert f"Outputs of this evaluation in {out}:" in printed and "metrics.json" in printed
    assert "Where the U-Net errs" in printed and "| density | noise: RMS / share" in printed


@pytest.mark.slow
def test_evaluate_without_a_checkpoint_scores_the_shipped_blind_model_beside_its_peers(
    compose_config, tiny_csv: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    cfg = compose_config(
        "evaluate",
        f"data.csv_path={tiny_csv}",
        f"+peers.tiny_peer={tiny_checkpoint}",
        "densities=[0.1]",
        "example_densities=[0.1]",
        "example_count=2",
        "amf_max_window=7",
        "device=cpu",
        output_dir=tmp_path / "evaluation",
    )
    result = evaluate(cfg)
    psnr = result.frame().set_index(["method", "density"])["psnr"]
    assert psnr["corruption-aware U-Net", 0.1] > psnr["switching median 3x3", 0.1]
    saved = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert saved["checkpoint"].endswith("blind-fer2013.ckpt")
    assert saved["self_ensemble"] == 2  # the face model's own: as given and mirrored
    assert saved["peers"] == {"tiny_peer": str(tiny_checkpoint)}
    # The peer is scored on the same noisy faces: a one-epoch tiny U-Net trails the blind model.
    assert psnr["tiny_peer", 0.1] < psnr["corruption-aware U-Net", 0.1]
    assert set(saved["metrics"]) >= {"tiny_peer", "corruption-aware U-Net"}


@pytest.mark.parametrize(
    ("overrides", "drawn"),
    [
        ((), [0.1, 0.5]),  # the defaults: both scored
        (("densities=[0.3]",), [0.3]),  # neither scored: the first noisy density instead
        (("densities=[0.0,0.5,0.9]",), [0.5]),
        (("densities=[0.0]",), []),  # nothing noisy: no examples
        (("densities=[0.1,0.9]", "example_densities=[0.9]"), [0.9]),  # as set
    ],
)
def test_examples_are_drawn_where_densities_are_scored(
    compose_config, overrides: tuple[str, ...], drawn: list[float]
) -> None:
    assert example_densities(compose_config("evaluate", *overrides)) == drawn
