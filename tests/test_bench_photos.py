"""The bench measures what a person waits for (issue 25): grey and colour photos restored as
predict restores them, in each engine, precision and count of views; predict on whole photo
files, launch to exit; and each command's start-up. The natural model is pointed at tiny
checkpoints in-process; child processes run the shipped grey model on grey pictures."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_bench import bench_targets
from test_restorer import save_model
from test_startup import COMMANDS

from denoise.benchmarks import photos
from denoise.benchmarks.launch import run_child
from denoise.benchmarks.photos import (
    chosen_views,
    clean_photo,
    noisy_photo,
    photo_rows,
    whole_photo_rows,
)
from denoise.benchmarks.startup import startup_rows
from denoise.benchmarks.suite import check_bench_settings
from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, within
from denoise.files.images import tensor_to_image
from denoise.inference import restorer as restorer_module
from denoise.inference.restorer import PictureRestorer, is_grey
from denoise.inference.shipped import SHIPPED_MODELS
from denoise.models.denoiser import Denoiser, Restorer
from denoise.models.networks import Design
from denoise.runtime.errors import SettingError

HAS_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None
KINDS = ("grey", "colour")


@pytest.fixture
def tiny_natural(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The natural model's grey and colour weights, pointed at tiny models (the shipped
    colour model is not what these tests are about)."""
    grey = save_model(tmp_path / "grey.ckpt", 1, seed=1)
    colour = save_model(tmp_path / "colour.ckpt", 3, seed=2)
    entry = dataclasses.replace(SHIPPED_MODELS["natural"], weights=grey, colour=colour)
    monkeypatch.setitem(SHIPPED_MODELS, "natural", entry)
    return grey, colour


@pytest.fixture
def restorers(monkeypatch: pytest.MonkeyPatch) -> list[PictureRestorer]:
    """Every PictureRestorer the bench makes."""
    made: list[PictureRestorer] = []

    class Recorded(PictureRestorer):
        def __post_init__(self) -> None:
            super().__post_init__()
            made.append(self)

    monkeypatch.setattr(photos, "PictureRestorer", Recorded)
    return made


@pytest.fixture
def targets(compose_config) -> Targets:
    """The targets of conf/bench.yaml."""
    return bench_targets(compose_config)


def photo_settings(**photos: object) -> dict:
    """Tiny photo settings: in-process timings only, unless ``photos`` asks for more."""
    chosen = {
        "megapixels": 0.01,
        "views": [1, 2],
        "engines": ["torch", "onnxruntime"],
        "memory_megapixels": [],
        "whole_megapixels": [],
        "whole_kinds": ["grey"],
        **photos,
    }
    return {"precisions": ["fp32", "bf16"], "photos": chosen}


def timed(rows: list[Row], kind: str, way: str, views: str) -> Row:
    (row,) = [
        row
        for row in rows
        if row.unit == "s per megapixel" and f", {way}" in row.what and views in row.what
        and f"{kind} photo" in row.what
    ]  # fmt: skip
    return row


def test_photos_are_timed_in_each_kind_engine_precision_and_count_of_views(
    tiny_natural: tuple[Path, Path], restorers: list[PictureRestorer], targets: Targets
) -> None:
    rows = photo_rows(OmegaConf.create(photo_settings()), 0.01, targets)
    ways = ["torch fp32 on cpu", "torch bf16 on cpu"]
    ways += ["onnxruntime fp32"] if HAS_ONNXRUNTIME else []
    for kind in KINDS:
        reference = timed(rows, kind, "torch fp32", "self_ensemble=1,")
        assert reference.value > 0 and reference.ratio == ""
        for way in ways:
            for views in ("self_ensemble=1,", "self_ensemble=2,", "its own views (8 for 0.01 MP)"):
                row = timed(rows, kind, way, views)
                assert row.value > 0 and "100×100" in row.what
                if row is not reference:
                    ratio = row.value / reference.value
                    assert row.ratio == f"{ratio:.2f}× torch fp32, 1 view"
        assert timed(rows, kind, "torch fp32", "self_ensemble=2,").target.startswith("≤ 2.25×")
    assert not [row for row in rows if "onnxruntime bf16" in row.what]  # fp32 only
    # each kind went to its own model, and ONNX Runtime's conversions were not kept
    assert len(restorers) == len(ways)
    assert all(set(made._models) == set(tiny_natural) for made in restorers)
    assert not any(Path(made.cache_dir).exists() for made in restorers)

    differences = [row for row in rows if row.unit == "levels of 255"]
    assert len(differences) == len(KINDS) * (len(ways) - 1)
    for row in differences:
        assert "its own views (8)" in row.what and row.ratio.startswith("PSNR to the clean photo")
        if "onnxruntime" in row.what:
            assert row.value <= 1  # the same model to 1e-4: at most a rounding apart
        assert 0 <= row.value <= 255


def test_an_engine_that_cannot_run_says_why(
    tiny_natural: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, targets: Targets
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    settings = photo_settings(views=[1])
    settings["precisions"] = ["fp32"]
    rows = photo_rows(OmegaConf.create(settings), 0.01, targets)
    missing = [row for row in rows if "onnxruntime" in row.what]
    assert len(missing) == len(KINDS)
    for row in missing:
        assert math.isnan(row.value)
        assert row.ratio.startswith("not available: SettingError: engine=onnxruntime: onnxruntime")
    assert all(row.value > 0 for row in rows if "torch" in row.what)


def test_the_colour_photo_is_colour_and_noisy_in_each_channel_on_its_own() -> None:
    clean = clean_photo(0.01, "colour")
    assert not is_grey(clean)  # predict would send it to the grey model
    photo = noisy_photo(0.01, kind="colour")
    grey = noisy_photo(0.01)
    assert photo.shape == (3, 100, 100) and grey.shape == (1, 100, 100)
    hit = (photo == 0) | (photo == 1)
    assert 0.45 < hit.float().mean() < 0.55
    assert 0.2 < (hit.all(0) == hit.any(0)).float().mean() < 0.4  # not whole pixels at once
    assert not np.allclose(photo[0], photo[1])


@pytest.mark.parametrize("cross_channel", [False, True])
def test_the_views_said_are_the_views_predicts_restorer_takes(
    tiny_natural: tuple[Path, Path],
    tmp_path: Path,
    cross_channel: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A colour model that restores one channel at a time passes over a photo three times:
    the size policy gives it fewer views than one that restores the three at once."""
    torch.manual_seed(0)
    design = Design.from_settings(dict(
        in_channels=3, out_channels=3, base_channels=4, depth=2, dropout=0.0,
        architecture="corruption_aware", cross_channel=cross_channel,
    ))  # fmt: skip
    path = tmp_path / "colour-design.ckpt"
    torch.save(
        {"state_dict": Denoiser(design).state_dict(), "hyper_parameters": asdict(design)}, path
    )
    entry = dataclasses.replace(SHIPPED_MODELS["natural"], colour=path, view_megapixels=0.2)
    SHIPPED_MODELS["natural"] = entry  # the fixture's monkeypatch puts it back
    restorer = PictureRestorer(weights="natural")
    colour, grey = noisy_photo(0.01, kind="colour"), noisy_photo(0.01)  # 8 × 0.01 MP fit
    assert chosen_views(restorer, grey) == 8
    assert chosen_views(restorer, colour) == (4 if cross_channel else 8)
    taken: list[int] = []
    real_denoise_image = restorer_module.denoise_image

    def recording(model: Restorer, image: torch.Tensor, **tiling: int) -> torch.Tensor:
        taken.append(model.views)
        return real_denoise_image(model, image, **tiling)

    monkeypatch.setattr(restorer_module, "denoise_image", recording)
    restorer.restore(tensor_to_image(colour, np.uint8))
    assert taken == [chosen_views(restorer, colour)]
    assert restorer.model(grey=False).views == 1  # the loaded model, left as it is


@pytest.mark.slow
def test_whole_photos_time_predict_from_launch_to_exit(targets: Targets) -> None:
    (row,) = whole_photo_rows([0.01], ["grey"], targets)
    assert row.section == "photos" and row.unit == "s"
    assert row.what == (
        "predict, default settings, launch to exit: 100×100 grey photo at 50% noise "
        "(0.01 MP; its own views: 8)"
    )
    assert 0.5 < row.value < 120 and row.ratio.startswith("peak RSS ")
    assert row.target == f"≤ 10 s {'✓' if row.value <= 10 else '✗'}"


@pytest.mark.parametrize(
    ("megapixels", "seconds"), [(0.01, 10), (1, 10), (1.01, 60), (12, 60), (12.5, None)]
)
def test_whole_photos_wait_for_the_issues_targets(
    targets: Targets, megapixels: float, seconds: float
) -> None:
    assert targets.photo_wait(megapixels) == seconds


def test_a_target_says_whether_it_was_met() -> None:
    assert within(1.5, 1.5, "s") == "≤ 1.5 s ✓"
    assert within(1.6, 1.5, "s") == "≤ 1.5 s ✗"
    assert within(math.nan, 10, "s") == "≤ 10 s ✗"  # a run that failed met nothing


def test_a_child_that_fails_says_why() -> None:
    run = run_child("denoise.predict", ["input=/no/such.png", "output=x.png"])
    assert run.failure.startswith("failed (exit 1): ")
    assert run.failure.endswith("error: /no/such.png: no such file or folder")


@pytest.mark.slow
def test_startup_rows_time_each_commands_help_and_predict_on_one_tile(targets: Targets) -> None:
    rows = startup_rows(targets)
    helps = {row.what: row for row in rows if row.what.endswith("--help")}
    assert set(helps) == {f"python -m denoise.{name} --help" for name in COMMANDS}
    for row in helps.values():
        assert row.section == "start-up" and row.unit == "s" and row.ratio == ""
        assert 0.1 < row.value < 60 and row.target == f"≤ 1.5 s {'✓' if row.value <= 1.5 else '✗'}"
    (predict,) = [row for row in rows if row not in helps.values()]
    assert predict.what == (
        "python -m denoise.predict, launch to exit: 64×64 grey photo at 50% noise, one view"
    )
    assert predict.value > 0 and predict.target.startswith("≤ 3 s ")


BAD = [
    ("photos.engines=[tensorflow]",
     "photos.engines=[tensorflow]: must be a list of engines among torch, onnxruntime"),
    ("photos.engines=[]", "photos.engines=[]: must be a list of engines among torch, onnxruntime"),
    ("photos.whole_megapixels=[0]",
     "photos.whole_megapixels=[0]: must be a list of sizes above 0 (or [])"),
    ("photos.whole_megapixels=12",
     "photos.whole_megapixels=12: must be a list of sizes above 0 (or [])"),
    ("photos.whole_kinds=[sepia]",
     "photos.whole_kinds=[sepia]: must be a list of kinds among grey, colour"),
    ("startup=yes", "startup=yes: must be true or false"),
    ("startup=1", "startup=1: must be true or false"),
    ("photos.views=[true]", "photos.views=[true]: must be a list of counts among 1, 2, 4, 8"),
]  # fmt: skip


@pytest.mark.parametrize(("override", "message"), BAD, ids=[bad[0] for bad in BAD])
def test_each_new_setting_is_checked_in_one_line(
    compose_config, override: str, message: str
) -> None:
    cfg = compose_config("bench", override)
    with pytest.raises(SettingError) as refused:
        check_bench_settings(cfg)
    assert str(refused.value) == message


def test_the_defaults_pass_and_can_skip_the_slow_parts(compose_config) -> None:
    check_bench_settings(compose_config("bench"))
    skipped = compose_config("bench", "photos.whole_megapixels=[]", "startup=false")
    check_bench_settings(skipped)
