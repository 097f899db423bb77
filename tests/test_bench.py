"""The benchmark's measuring pieces, and that the speed-ups change no result."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, fer_frame

import denoise.benchmarks
from denoise.benchmarks import startup
from denoise.benchmarks.ceilings import conv_ceiling, conv_shapes
from denoise.benchmarks.inference import bf16_rates, inference_rates, onnx_engine
from denoise.benchmarks.launch import ChildRun
from denoise.benchmarks.loading import data_figures
from denoise.benchmarks.machine import machine_rows
from denoise.benchmarks.memory import predict_memory_rows
from denoise.benchmarks.suite import check_bench_settings
from denoise.benchmarks.table import Row, markdown
from denoise.benchmarks.targets import Targets
from denoise.benchmarks.timing import seconds_per_call
from denoise.benchmarks.training import training_step
from denoise.data.datamodule import FERDataModule
from denoise.models.module import DenoisingModule
from denoise.runtime.errors import SettingError
from denoise.training.run import train
from denoise.training.summary import read_summary


def bench_targets(compose_config, *overrides: str) -> Targets:
    """The targets of ``conf/bench.yaml``, with ``overrides`` as on the command line."""
    return check_bench_settings(compose_config("bench", *overrides))


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


def test_data_figures_on_a_small_csv(tmp_path: Path, compose_config) -> None:
    path = tmp_path / "faces.csv"
    fer_frame({"Training": 128, "PrivateTest": 16, "PublicTest": 16}).to_csv(path, index=False)
    datamodule = FERDataModule(csv_path=str(path), cache_dir=str(tmp_path / "cache"))
    targets = bench_targets(compose_config, "targets.first_parse_seconds=5")
    rows = data_figures(str(path), datamodule, 0.5, 0.05, targets)
    by_what = {row.what: row for row in rows}
    assert by_what["first parse of faces.csv"].unit == "s"
    assert by_what["first parse of faces.csv"].target == "≤ 5 s"  # as the config says
    assert by_what["reload of faces.csv from cache"].target == "≤ 0.3 s"
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
            f"data.csv_path={tiny_csv}", *TINY_MODEL[:2], "model.net.dropout=0.2",
            f"model.channels_last={fast}", f"model.net.packed_dropout={fast}",
            "trainer.max_epochs=2", "data.batch_size=8", "logger=none", "test=false",
            output_dir=tmp_path / fast,
        )  # fmt: skip
        train(cfg)
        psnr.append(read_summary(tmp_path / fast)["best_epoch"]["val/psnr"])
    assert psnr[0] == pytest.approx(psnr[1], abs=0.1)


@pytest.mark.skipif(not importlib.util.find_spec("onnxruntime"), reason="onnxruntime absent")
def test_onnx_export_of_the_corruption_aware_model_matches_eager() -> None:
    from denoise.data.noise import add_salt_and_pepper

    torch.manual_seed(0)
    module = DenoisingModule(base_channels=4, depth=3, architecture="corruption_aware").eval()
    noisy = add_salt_and_pepper(torch.rand(3, 1, 48, 48), 0.3)
    with torch.inference_mode():
        expected = module(noisy)
    restored = onnx_engine(module)(noisy)
    torch.testing.assert_close(restored, expected, rtol=1e-4, atol=1e-5)


def test_predict_memory_rows_measure_predicts_memory_and_its_growth(compose_config) -> None:
    """predict's peak memory (in child processes) on two photo sizes, with its growth."""
    sizes = [0.01, 0.04]
    rows = predict_memory_rows(sizes, bench_targets(compose_config))
    peaks = [row.value for row in rows if row.unit == "GiB"]
    assert len(peaks) == 2 and all(0.1 < peak < 8 for peak in peaks)  # a real process' memory
    (growth,) = [row for row in rows if row.unit == "MiB"]
    side = [round((size * 1e6) ** 0.5) ** 2 / 1e6 for size in sizes]
    assert growth.value == pytest.approx((peaks[1] - peaks[0]) * 1024 / (side[1] - side[0]))
    assert growth.ratio == "under 0.52 MP: a batch of tiles fills"  # too small to read as bound
    assert growth.target == "≤ 64 MiB"


def test_targets_come_from_the_config_and_decide_each_tick(
    compose_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command's --help taking 1 s meets the config's 1.5 s, and misses 0.5 s."""
    finished = subprocess.CompletedProcess([], 0, "", "")
    monkeypatch.setattr(startup, "run_child", lambda *_: ChildRun(finished, 1.0, 0.1))
    for limit, tick in (("1.5", "✓"), ("0.5", "✗")):
        targets = bench_targets(compose_config, f"targets.help_seconds={limit}")
        rows = startup.startup_rows(targets)
        helps = [row.target for row in rows if row.what.endswith("--help")]
        assert helps and set(helps) == {f"≤ {limit} s {tick}"}
        assert rows[-1].target == "≤ 3 s ✓"  # predict's start-up: its own target


def test_photo_waits_come_from_the_config(compose_config) -> None:
    waits = "targets.photo_wait_seconds=[{megapixels:2,seconds:5},{megapixels:0.5,seconds:1}]"
    targets = bench_targets(compose_config, waits)
    assert [targets.photo_wait(size) for size in (0.5, 1, 2, 3)] == [1, 5, 5, None]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("targets.help_seconds=0", "targets.help_seconds=0: must be a number above 0"),
        ("targets.view_overhead=fast", "targets.view_overhead=fast: must be a number above 0"),
        (
            "targets.photo_wait_seconds=[{megapixels:1}]",
            "targets.photo_wait_seconds=[{'megapixels': 1}]: must be a list of "
            "{megapixels: M, seconds: S} with numbers above 0",
        ),
    ],
)
def test_a_wrong_target_stops_the_bench_in_one_line(
    compose_config, override: str, message: str
) -> None:
    with pytest.raises(SettingError) as refused:
        bench_targets(compose_config, override)
    assert str(refused.value) == message


def code_strings(source: str) -> list[str]:
    """The string constants of ``source``, less its docstrings (which may show examples)."""
    tree = ast.parse(source)
    scopes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(scope.body[0].value)
        for scope in ast.walk(tree)
        if isinstance(scope, scopes) and scope.body and isinstance(scope.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


def test_no_target_is_written_in_the_code() -> None:
    """Targets are declared once, in conf/bench.yaml: no bound such as "≤ 3 s" in the code."""
    assert any(re.search(r"[≤≥<] ?\d", text) for text in code_strings('x = "≤ 3 s"'))
    folder = Path(denoise.benchmarks.__file__).parent
    for module in folder.glob("*.py"):
        bounds = [
            text for text in code_strings(module.read_text()) if re.search(r"[≤≥<] ?\d", text)
        ]
        assert not bounds, module.name
