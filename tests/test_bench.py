"""The benchmark's measuring pieces, and that the speed-ups change no result."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, fer_frame

from denoise.benchmarks.suite import (
    Row,
    bf16_rates,
    conv_ceiling,
    conv_shapes,
    data_figures,
    inference_rates,
    machine_rows,
    markdown,
    predict_memory_rows,
    seconds_per_call,
    training_step,
)
from denoise.data.datamodule import FERDataModule
from denoise.models.module import DenoisingModule
from denoise.training.run import train
from denoise.training.summary import read_summary


def tiny_module(**kwargs) -> DenoisingModule:
    return DenoisingModule(base_channels=4, depth=3, **kwargs)


def test_conv_shapes_finds_every_convolution_with_its_input() -> None:
    shapes = conv_shapes(tiny_module().net, torch.rand(2, 1, 48, 48))
    # 2 per encoder block, 1 transposed + 2 per decoder block, 1 output conv
    assert len(shapes) == 3 * 2 + 2 * 3 + 1
    assert shapes[0][1] == (2, 1, 48, 48) and shapes[-1][1] == (2, 4, 48, 48)


def test_ceiling_and_training_step_figures_are_consistent() -> None:
    module = tiny_module()
    ceiling = conv_ceiling(module.net, torch.rand(8, 1, 48, 48), backward=True, min_seconds=0.05)
    images, gflops = training_step(module, 8, 48, 1, min_seconds=0.05)
    assert ceiling > 0 and images > 0 and gflops > 0
    assert seconds_per_call(lambda: None, 0.01) < 0.01


def test_bf16_figures_are_measured_in_bf16(monkeypatch) -> None:
    module = tiny_module()
    seen = []
    original = torch.nn.Conv2d._conv_forward

    def spy(self, x, weight, bias):  # the dtype each convolution really computes in
        out = original(self, x, weight, bias)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
    example = torch.rand(4, 1, 48, 48)
    assert conv_ceiling(module.net, example, backward=True, min_seconds=0.01, precision="bf16") > 0
    assert torch.bfloat16 in seen  # (the shapes are found by one fp32 pass first)
    seen.clear()
    images, gflops = training_step(module, 4, 48, 1, min_seconds=0.01, precision="bf16")
    assert images > 0 and gflops > 0
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    training_step(module, 4, 48, 1, min_seconds=0.01, precision="fp32")
    assert set(seen) == {torch.float32}
    assert all(rate > 0 for rate in bf16_rates(module.eval(), [1, 2], 0.01).values())


def test_machine_rows_name_the_processor_and_what_onednn_runs() -> None:
    rows = {row.what: row.value for row in machine_rows()}
    assert rows["processor"] and rows["ATen CPU capability"]
    assert rows["bf16 hardware"].startswith(("yes (", "no ("))
    assert rows["training precision by default"] in ("32-true", "bf16-mixed")
    if torch.backends.mkldnn.is_available():
        assert rows["oneDNN isa"] != "unknown"
        assert rows["oneDNN fp32 convolution kernel"]


def test_data_figures_on_a_small_csv(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    fer_frame({"Training": 128, "PrivateTest": 16, "PublicTest": 16}).to_csv(path, index=False)
    datamodule = FERDataModule(csv_path=str(path), cache_dir=str(tmp_path / "cache"))
    rows = data_figures(str(path), datamodule, step_seconds=0.5, min_seconds=0.05)
    by_what = {row.what: row for row in rows}
    assert by_what["first parse of faces.csv"].unit == "s"
    assert (
        by_what["reload of faces.csv from cache"].value < by_what["first parse of faces.csv"].value
    )
    share = by_what["waiting on data + noise, share of a training step"]
    assert 0 < share.value < 100 and share.unit == "%"


def test_inference_engines_agree_with_eager() -> None:
    module = tiny_module().eval()
    rates = inference_rates(module, [1, 4], min_seconds=0.05, compile_model=False)
    assert all(rate > 0 for rate in rates["channels_last"].values())
    assert all(rate != rate for rate in rates["torch.compile"].values())  # turned off: NaN
    if importlib.util.find_spec("onnxruntime"):
        assert all(rate > 0 for rate in rates["ONNX Runtime"].values())


@pytest.mark.slow
def test_compiled_model_gives_eager_outputs() -> None:
    module = tiny_module().eval()
    x = torch.rand(3, 1, 48, 48)
    with torch.inference_mode():
        expected = module(x)
        compiled = torch.compile(module)(x)
    torch.testing.assert_close(compiled, expected, rtol=1e-4, atol=1e-5)


def test_markdown_table_has_one_line_per_row() -> None:
    rows = [
        Row("a", "b", 1.5, "s", "2×", "≤ 3 s"),
        Row("c", "d", 3.0, "GB"),
        Row("e", "f", "AVX2", ""),
    ]
    lines = markdown(rows).splitlines()
    assert len(lines) == 5 and lines[2] == "| a | b | 1.5 | s | 2× | ≤ 3 s |"
    assert lines[4] == "| e | f | AVX2 |  |  |  |"


def test_speed_ups_do_not_change_validation_psnr(
    compose_train, tiny_csv: Path, tmp_path: Path
) -> None:
    psnr = []
    for fast in ("true", "false"):
        cfg = compose_train(
            f"data.csv_path={tiny_csv}", *TINY_MODEL[:2], "model.dropout=0.2",
            f"model.channels_last={fast}", f"model.packed_dropout={fast}",
            "trainer.max_epochs=2", "data.batch_size=8", "logger=none", "test=false",
            output_dir=tmp_path / fast,
        )  # fmt: skip
        train(cfg)
        psnr.append(read_summary(tmp_path / fast)["best_epoch"]["val/psnr"])
    assert psnr[0] == pytest.approx(psnr[1], abs=0.1)


@pytest.mark.skipif(not importlib.util.find_spec("onnxruntime"), reason="onnxruntime absent")
def test_onnx_export_of_the_corruption_aware_model_matches_eager() -> None:
    from denoise.benchmarks.suite import _onnx_engine
    from denoise.data.noise import add_salt_and_pepper

    torch.manual_seed(0)
    module = DenoisingModule(base_channels=4, depth=3, architecture="corruption_aware").eval()
    noisy = add_salt_and_pepper(torch.rand(3, 1, 48, 48), 0.3)
    with torch.inference_mode():
        expected = module(noisy)
    restored = _onnx_engine(module)(noisy)
    torch.testing.assert_close(restored, expected, rtol=1e-4, atol=1e-5)


def test_predict_memory_rows_measure_predicts_memory_and_its_growth() -> None:
    """predict's peak memory (in child processes) on two photo sizes, with its growth."""
    sizes = [0.01, 0.04]
    rows = predict_memory_rows(sizes)
    peaks = [row.value for row in rows if row.unit == "GiB"]
    assert len(peaks) == 2 and all(0.1 < peak < 8 for peak in peaks)  # a real process' memory
    (growth,) = [row for row in rows if row.unit == "MiB"]
    side = [round((size * 1e6) ** 0.5) ** 2 / 1e6 for size in sizes]
    assert growth.value == pytest.approx((peaks[1] - peaks[0]) * 1024 / (side[1] - side[0]))
    assert growth.ratio == "under 0.52 MP: a batch of tiles fills"  # too small to read as bound
