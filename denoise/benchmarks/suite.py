"""The work of ``python -m denoise.bench`` (its usage: :mod:`denoise.bench`): every row of the
table in one run (the machine, convolution ceilings, training and inference rates, data, memory,
photos restored as predict restores them, whole photos and start-up), then ``bench.md`` and
``bench.json``."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from skimage import data
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from denoise.data.datamodule import FERDataModule
from denoise.data.fer_csv import load_fer_csv
from denoise.data.noise import add_salt_and_pepper
from denoise.data.settings import check_data_settings
from denoise.files.images import tensor_to_image
from denoise.files.outputs import absolute, folder_listing
from denoise.inference.checkpoints import load_denoiser, pick_device
from denoise.inference.engines import ENGINES, ONNXRUNTIME, OnnxDenoiser, export_onnx
from denoise.inference.restorer import PictureRestorer
from denoise.inference.shipped import FACES, NATURAL, shipped_model
from denoise.inference.tiling import network_passes
from denoise.models.denoiser import Restoring
from denoise.models.module import DenoisingModule
from denoise.models.self_ensemble import VIEW_COUNTS
from denoise.runtime.errors import SettingError
from denoise.runtime.machine import bf16_hardware, cpu_name, default_precision
from denoise.runtime.settings import (
    positive_number,
    positive_numbers,
    setting,
    some_of,
    true_or_false,
    whole_number,
)

PRECISIONS = ("fp32", "bf16")


@dataclass
class Row:
    section: str
    what: str
    value: float | str
    unit: str
    ratio: str = ""
    target: str = ""


def in_precision(precision: str) -> contextlib.AbstractContextManager:
    """fp32 as written, or bf16 the way Lightning's bf16-mixed runs a CPU model (autocast)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def onednn_isa() -> dict[str, str]:
    """What oneDNN itself reports (in a child process: its verbose log goes to stdout from
    C++): the instruction set it dispatches to, and the convolution kernel it picks for a
    fp32 and a bf16 layer, e.g. ``brg_conv_fwd:avx2`` or ``brg_conv_fwd:avx512_core_amx``."""
    script = (
        "import torch\n"
        "torch._C._verbose.mkldnn_set_verbose(1)\n"
        "conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)\n"
        "x = torch.rand(8, 64, 24, 24).contiguous(memory_format=torch.channels_last)\n"
        "with torch.no_grad():\n"
        "    conv(x)\n"
        "    with torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "        conv(x)\n"
    )
    try:
        output = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return {"isa": f"unknown ({error})"}
    found = {"isa": "unknown"}
    for line in output.splitlines():
        fields = line.split(",")
        if ",info,cpu,isa:" in line:
            found["isa"] = line.split("isa:", 1)[1].strip()
        elif len(fields) > 8 and fields[3] == "exec" and fields[5] == "convolution":
            dtype = "bf16" if "src:bf16" in fields[8] else "fp32"
            found.setdefault(f"{dtype} convolution kernel", fields[6])
    return found


def seconds_per_call(
    fn: Callable[[], object], min_seconds: float, min_calls: int = 3, warm_up: bool = True
) -> float:
    """Mean wall time of ``fn`` over at least ``min_seconds`` and ``min_calls`` calls, after
    one warm-up call (left out where the caller warmed it: a photo's calls take seconds)."""
    if warm_up:
        fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def conv_shapes(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Module, torch.Size]]:
    """Every convolution of ``model`` with the input shape it sees for ``example``."""
    seen: list[tuple[nn.Module, torch.Size]] = []
    hooks = [
        layer.register_forward_pre_hook(lambda layer, args: seen.append((layer, args[0].shape)))
        for layer in model.modules()
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return seen


def conv_ceiling(
    model: nn.Module,
    example: torch.Tensor,
    backward: bool,
    min_seconds: float,
    precision: str = "fp32",
) -> float:
    """GFLOP/s of the model's own convolutions timed alone, channels_last, in ``precision``."""
    total_flops, total_seconds = 0, 0.0
    for layer, shape in conv_shapes(model, example):
        conv = copy.deepcopy(layer).to(memory_format=torch.channels_last)
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(backward)
        grad = torch.ones_like(conv(x)) if backward else None

        def call(
            conv: nn.Module = conv, x: torch.Tensor = x, grad: torch.Tensor | None = grad
        ) -> None:
            if backward:
                with in_precision(precision):
                    out = conv(x)
                out.backward(grad.to(out.dtype))
            else:
                with torch.no_grad(), in_precision(precision):
                    conv(x)

        total_flops += count_flops(call)
        total_seconds += seconds_per_call(call, min_seconds / 4)
    return total_flops / total_seconds / 1e9


def plain_conv_ceiling(min_seconds: float, precision: str = "fp32") -> float:
    conv = nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(32, 64, 48, 48).contiguous(memory_format=torch.channels_last).requires_grad_()

    def call() -> None:
        with in_precision(precision):
            out = conv(x)
        out.float().sum().backward()

    return count_flops(call) / seconds_per_call(call, min_seconds) / 1e9


def training_step(
    module: DenoisingModule,
    batch: int,
    size: int,
    channels: int,
    min_seconds: float,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Images/s and GFLOP/s of forward + backward + Adam step on a fixed batch, in
    ``precision`` (bf16: autocast forward, as Lightning's bf16-mixed; fp32 weights)."""
    module.train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    clean = torch.rand(batch, channels, size, size)
    noisy = add_salt_and_pepper(clean, 0.1)

    def forward_backward() -> None:
        with in_precision(precision):
            loss = module.loss(module(noisy).float(), clean)
        loss.backward()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        optimizer.step()

    flops = count_flops(forward_backward)
    seconds = seconds_per_call(step, min_seconds)
    return batch / seconds, flops / seconds / 1e9


def inference_rates(
    module: DenoisingModule, batches: list[int], min_seconds: float, compile_model: bool = True
) -> dict[str, dict[int, float]]:
    """Images/s per engine and batch size; an engine that cannot run here reports why."""
    channels = module.hparams.in_channels
    eager = copy.deepcopy(module).eval()
    eager.memory_format = torch.contiguous_format
    eager.net.to(memory_format=torch.contiguous_format)
    fast = copy.deepcopy(module).eval()
    engines: dict[str, Callable[[torch.Tensor], object]] = {
        "eager (NCHW)": eager,
        "channels_last": fast,
    }
    try:
        if not compile_model:
            raise RuntimeError("turned off (compile=false)")
        compiled = torch.compile(fast)
        with torch.inference_mode():
            compiled(torch.rand(2, channels, 48, 48))
        engines["torch.compile"] = compiled
    except Exception as error:
        engines["torch.compile"] = _unavailable(error)
    engines["ONNX Runtime"] = _onnx_engine(eager)
    rates: dict[str, dict[int, float]] = {}
    for name, engine in engines.items():
        rates[name] = {}
        for batch in batches:
            x = torch.rand(batch, channels, 48, 48)
            try:
                with torch.inference_mode():
                    rates[name][batch] = batch / seconds_per_call(
                        lambda e=engine, x=x: e(x), min_seconds
                    )
            except RuntimeError as error:
                rates[name][batch] = float("nan")
                print(f"{name}: {error}")
    return rates


def _why(error: Exception) -> str:
    """Why an engine cannot run here, in a row's words."""
    return f"not available: {type(error).__name__}: {str(error)[:120]}"


def _unavailable(error: Exception) -> Callable[[torch.Tensor], object]:
    def fail(_: torch.Tensor) -> object:
        raise RuntimeError(_why(error))

    return fail


def _onnx_engine(module: Restoring) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module``'s network run by ONNX Runtime, converted as ``export`` and ``predict``
    convert it (one converter in the project); its restored images."""
    try:
        with tempfile.TemporaryDirectory() as folder:  # the session keeps what it read
            path = Path(folder) / "denoiser.onnx"
            export_onnx(module, path)
            network = OnnxDenoiser(path).net
    except Exception as error:
        return _unavailable(error)
    return lambda x: network.restore_and_decide(x)[0]


def data_figures(
    csv_path: str, datamodule: FERDataModule, step_seconds: float, min_seconds: float
) -> list[Row]:
    """CSV parse cold and warm, the reference per-row parsing, and the data share of a step."""
    rows = []
    started = time.perf_counter()
    load_fer_csv(csv_path, datamodule.cache_dir, datamodule.splits)  # parses, writes the cache
    cold = time.perf_counter() - started
    started = time.perf_counter()
    load_fer_csv(csv_path, datamodule.cache_dir, datamodule.splits)
    warm = time.perf_counter() - started
    name = Path(csv_path).name
    rows.append(Row("data", f"first parse of {name}", cold, "s", target="≤ 3 s"))
    rows.append(Row("data", f"reload of {name} from cache", warm, "s", target="≤ 0.3 s"))

    datamodule.setup("fit")
    train = datamodule.datasets["train"]
    loader = datamodule.train_dataloader()
    batches = iter(loader)

    def next_batch() -> None:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        datamodule.make_pair(batch)

    ours = seconds_per_call(next_batch, min_seconds)
    clean = torch.rand(datamodule.batch_size, datamodule.channels, 48, 48)
    noise = seconds_per_call(
        lambda: add_salt_and_pepper(clean, datamodule.noise.amount), min_seconds
    )
    reference = _reference_epoch_seconds(csv_path, len(train), datamodule.splits["train"])
    epoch_ours = ours * len(loader)
    rows.append(
        Row(
            "data",
            "one training epoch of batches, reference way (parse rows in __getitem__)",
            reference,
            "s",
            f"{reference / epoch_ours:.0f}× ours ({epoch_ours:.2f} s)",
        )
    )
    share = ours / (ours + step_seconds)
    rows.append(
        Row(
            "data",
            "waiting on data + noise, share of a training step",
            100 * share,
            "%",
            f"noise alone {100 * noise / (ours + step_seconds):.2f}%",
            "< 2%",
        )
    )
    return rows


def _reference_epoch_seconds(
    csv_path: str, count: int, usages: list[str], sample: int = 2000
) -> float:
    """The reference notebook's loader: keep strings, parse one row per __getitem__."""
    frame = pd.read_csv(csv_path, nrows=max(sample, 1))
    texts = frame["pixels"].tolist()[:sample]
    started = time.perf_counter()
    for text in texts:
        image = np.array(text.split(), dtype=np.float32).reshape(48, 48) / 255.0
        torch.from_numpy(image).unsqueeze(0)
    return (time.perf_counter() - started) / len(texts) * count


PEAK_RSS_REPORTER = """
import re, runpy, sys
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
try:
    runpy.run_module(module, run_name="__main__")
finally:
    status = open("/proc/self/status").read()
    print("PEAK_RSS_KB", re.search(r"VmHWM:\\s+(\\d+)", status).group(1), file=sys.stderr)
"""


@dataclass(frozen=True)
class ChildRun:
    """``python -m <command>`` run in a child process, with the bench's environment."""

    completed: subprocess.CompletedProcess
    seconds: float  # wall time from launch to exit: what a person waits for
    peak_gib: float  # its own peak resident memory

    @property
    def failure(self) -> str:
        """Empty where it succeeded; else its exit status and its error line (else its last
        line of output)."""
        if self.completed.returncode == 0:
            return ""
        output = f"{self.completed.stdout}\n{self.completed.stderr}".splitlines()
        lines = [line for line in output if line.strip() and not line.startswith("PEAK_RSS_KB")]
        said = next(
            (line for line in lines if line.startswith("error:")), lines[-1] if lines else ""
        )
        return f"failed (exit {self.completed.returncode}): {said}"


def run_child(command: str, arguments: list[str]) -> ChildRun:
    """Run ``python -m <command> <arguments>`` as a child process and time it.

    The child reports its own high-water mark (VmHWM): the parent's rusage of children
    would include the pages a forked child inherits from this (large) process.
    """
    child = [sys.executable, "-c", PEAK_RSS_REPORTER, command, *arguments]
    started = time.perf_counter()
    completed = subprocess.run(child, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    kilobytes = re.search(r"PEAK_RSS_KB (\d+)", completed.stderr)
    peak = int(kilobytes.group(1)) / 1024**2 if kilobytes else float("nan")
    return ChildRun(completed, seconds, peak)


def peak_rss(command: str, overrides: list[str]) -> float:
    """Peak resident memory (GiB) of ``python -m <command> <overrides>``; a failure raises."""
    run = run_child(command, overrides)
    run.completed.check_returncode()
    return run.peak_gib


def peak_training_rss(csv_path: str, batches: int) -> float:
    """Peak resident memory (GiB) of a real training run on ``csv_path``."""
    with tempfile.TemporaryDirectory() as folder:
        overrides = [
            f"data.csv_path={csv_path}", f"paths.log_dir={folder}", "trainer.max_epochs=1",
            f"trainer.limit_train_batches={batches}", "trainer.limit_val_batches=5",
            "trainer.limit_test_batches=5", "logger=none", "trainer.enable_progress_bar=false",
        ]  # fmt: skip
        return peak_rss("denoise.train", overrides)


# A grey megapixel takes 1 MiB as 8-bit pixels and 4 MiB as a float plane; predict holds a few
# such copies (decoded, noisy, restored, written) and the network only tiles: tens of MiB per
# megapixel. A whole-image pass would add its activations: hundreds.
MIB_PER_MEGAPIXEL = 64

GREY, COLOUR = "grey", "colour"
PHOTO_KINDS = (GREY, COLOUR)
PHOTO_NOISE = 0.5
# Issue 25's longest waits for predict's default: seconds, for a photo of up to so many
# megapixels.
WAIT_TARGETS = ((1.0, 10.0), (12.0, 60.0))
HELP_SECONDS = 1.5  # issue 25: every command's --help
PREDICT_START_SECONDS = 3.0  # issue 25: predict starts on its first tile within this
START_SIDE = 64  # the picture predict's start-up restores: one tile, so the rest is start-up
OVERHEAD = 1.125  # views may cost this much more than a pass each (then their mean)


def clean_photo(megapixels: float, kind: str = GREY) -> torch.Tensor:
    """A ``(C, H, W)`` photo in [0, 1], square, of about ``megapixels``: scikit-image's
    camera (grey) or astronaut (colour), resized."""
    side = round(math.sqrt(megapixels * 1e6))
    picture = data.camera()[..., None] if kind == GREY else data.astronaut()
    planes = torch.from_numpy(picture.astype(np.float32) / 255).permute(2, 0, 1)[None]
    photo = F.interpolate(planes, size=(side, side), mode="bilinear", align_corners=False)
    return photo[0].clamp(0, 1)


def noisy_photo(megapixels: float, density: float = PHOTO_NOISE, kind: str = GREY) -> torch.Tensor:
    """:func:`clean_photo` under salt-and-pepper (seeded), drawn for each channel on its
    own, as published colour results draw it."""
    generator = torch.Generator().manual_seed(0)
    clean = clean_photo(megapixels, kind)[None]
    return add_salt_and_pepper(clean, density, generator=generator)[0]


def saved_photo(photo: torch.Tensor, path: Path) -> Path:
    """``photo`` written as an 8-bit image file, as a person would give it to predict."""
    Image.fromarray(tensor_to_image(photo, np.uint8)).save(path)
    return path


def photo_label(photo: torch.Tensor, kind: str) -> str:
    return f"{photo.shape[-1]}×{photo.shape[-2]} {kind} photo at {PHOTO_NOISE:.0%} noise"


def chosen_views(restorer: PictureRestorer, photo: torch.Tensor) -> int:
    """The views ``restorer`` gives ``photo`` (grey, or colour with channels that differ),
    by the rule its ``restore`` follows: the picture's pixels and the network's passes."""
    model = restorer.model(grey=len(photo) == 1)
    return restorer.views(photo[0].numel(), network_passes(model, len(photo)))


def within(value: float, limit: float, unit: str) -> str:
    """A target as the README writes it, met (✓) or not (✗)."""
    return f"≤ {limit:g} {unit} {'✓' if value <= limit else '✗'}"


def photo_rows(cfg: DictConfig, seconds: float) -> list[Row]:
    """The shipped natural model restoring grey and colour photos as ``predict`` does,
    in each engine, precision and count of views; ``predict``'s peak memory at several
    photo sizes; and what a person waits for, end to end, on whole photos."""
    photos = cfg.photos
    engines, precisions = list(photos.engines), list(cfg.precisions)
    ways = [(e, p) for e in engines for p in precisions if e == "torch" or p == "fp32"]
    with tempfile.TemporaryDirectory() as cache:  # ONNX Runtime's conversions
        restorers = {
            (engine, precision): PictureRestorer(
                weights=NATURAL, precision=precision, engine=engine, cache_dir=cache
            )
            for engine, precision in ways
        }
        rows = []
        for kind in PHOTO_KINDS:
            photo = noisy_photo(float(photos.megapixels), kind=kind)
            clean = clean_photo(float(photos.megapixels), kind)
            rows += photo_speed_rows(photo, clean, kind, restorers, list(photos.views), seconds)
    rows += predict_memory_rows([float(size) for size in photos.memory_megapixels])
    rows += whole_photo_rows([float(size) for size in photos.whole_megapixels], photos.whole_kinds)
    return rows


def photo_speed_rows(
    photo: torch.Tensor,
    clean: torch.Tensor,
    kind: str,
    restorers: dict[tuple[str, str], PictureRestorer],
    views: list[int],
    seconds: float,
) -> list[Row]:
    """Seconds per megapixel of each restorer (engine, precision) on ``photo`` with each
    count of ``views`` and with its own policy (self_ensemble=None), as a ratio to torch fp32
    with one view; and where each differs from torch fp32 at its own views, with the PSNR
    of each to ``clean`` (bf16 may cost quality; ONNX Runtime should cost none)."""
    array = tensor_to_image(photo, np.uint8)
    pixels = photo.shape[-2] * photo.shape[-1]
    shown = photo_label(photo, kind)
    timings: dict[tuple[str, str, int], float] = {}
    outputs: dict[tuple[str, str, int], np.ndarray] = {}
    timed: list[tuple[Row, tuple[str, str, int] | None]] = []
    own: dict[tuple[str, str], int] = {}  # the views each way takes by itself
    for (engine, precision), restorer in restorers.items():
        device = "" if engine == ONNXRUNTIME else f" on {pick_device(restorer.device)}"
        label = f"natural model, {engine} {precision}{device}"
        try:
            restorer.model(grey=kind == GREY)  # loaded (converted) before any timing
        except Exception as error:
            if engine != ONNXRUNTIME:
                raise
            row = Row("photos", f"{label}, {shown}", math.nan, "s per megapixel", _why(error))
            timed.append((row, None))
            continue
        warm_up = True  # once per model: its first call loads what the others reuse
        for chosen in [*views, None]:
            restorer.self_ensemble = chosen
            key = (engine, precision, chosen_views(restorer, photo))

            def restore(restorer: PictureRestorer = restorer, key: tuple = key) -> None:
                outputs[key] = restorer.restore(array)

            if key not in timings:
                spent = seconds_per_call(restore, seconds, min_calls=1, warm_up=warm_up)
                timings[key], warm_up = spent * 1e6 / pixels, False
            how = f"self_ensemble={chosen}"
            if chosen is None:
                own[engine, precision] = key[2]
                how = f"its own views ({key[2]} for {pixels / 1e6:.2g} MP)"
            row = Row("photos", f"{label}, {how}, {shown}", timings[key], "s per megapixel")
            timed.append((row, key))
    reference = timings.get(("torch", "fp32", 1))
    for row, key in timed:
        if reference is not None and key is not None and key != ("torch", "fp32", 1):
            row.ratio = f"{row.value / reference:.2f}× torch fp32, 1 view"
            if key[:2] == ("torch", "fp32"):
                row.target = f"≤ {OVERHEAD * key[2]:g}× (a pass per view, then their mean)"
    rows = [row for row, _ in timed]
    rows += difference_rows(outputs, own, clean, shown)
    return rows


def difference_rows(
    outputs: dict[tuple[str, str, int], np.ndarray],
    own: dict[tuple[str, str], int],
    clean: torch.Tensor,
    shown: str,
) -> list[Row]:
    """Each way's (engine, precision) largest difference to torch fp32 on the same photo at
    its ``own`` views, in 8-bit levels (what predict writes), with the PSNR of both to the
    clean photo."""
    expected = tensor_to_image(clean, np.uint8)
    rows = []
    for (engine, precision), count in own.items():
        mine = outputs[engine, precision, count]
        reference = outputs.get(("torch", "fp32", count))
        if (engine, precision) == ("torch", "fp32") or reference is None:
            continue
        largest = int(np.abs(mine.astype(np.int16) - reference.astype(np.int16)).max())
        what = (
            f"natural model, {engine} {precision} against torch fp32, its own views "
            f"({count}), {shown}: largest difference"
        )
        psnr = f"PSNR to the clean photo {_psnr(mine, expected):.2f} dB (torch fp32: "
        psnr += f"{_psnr(reference, expected):.2f} dB)"
        rows.append(Row("photos", what, largest, "levels of 255", psnr))
    return rows


def _psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    error = np.mean((restored.astype(np.float64) - clean.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / error) if error else math.inf


def predict_memory_rows(sizes: list[float]) -> list[Row]:
    """``predict``'s peak RSS on a photo of each size (one view), and how much it grows per
    added megapixel: the photo's own buffers, not the network's activations, once the photo
    fills a batch of tiles (below that, each added tile adds its activations too)."""
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            photo = noisy_photo(size)
            source = saved_photo(photo, Path(folder) / f"{size:g}mp.png")
            target = Path(folder) / "restored.png"
            overrides = [f"input={source}", f"output={target}", "self_ensemble=1"]
            peak = peaks[photo[0].numel() / 1e6] = peak_rss("denoise.predict", overrides)
            what = f"peak RSS, predict on a {size:g} MP grey photo"
            rows.append(Row("memory", what, peak, "GiB"))
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        growth = (peaks[large] - peaks[small]) * 1024 / (large - small)
        tiling = shipped_model(NATURAL).tiling
        batch_area = tiling["tile_size"] ** 2 * tiling["batch_size"] / 1e6
        what = "predict: its peak RSS grows per megapixel by"
        note = "" if small >= batch_area else f"under {batch_area:.2g} MP: a batch of tiles fills"
        target = f"≤ {MIB_PER_MEGAPIXEL} MiB"
        rows.append(Row("memory", what, growth, "MiB", note, target))
    return rows


def wait_target(megapixels: float) -> float | None:
    """The issue's longest wait for a photo of this size (None above the largest)."""
    return next((limit for size, limit in WAIT_TARGETS if megapixels <= size), None)


def whole_photo_rows(sizes: list[float], kinds: list[str]) -> list[Row]:
    """What a person waits for: ``python -m denoise.predict`` with its default settings on
    a noisy photo file of each size and kind, from launch to exit, with its peak memory."""
    if not sizes:
        return []
    rows, restorer = [], PictureRestorer(weights=NATURAL)  # says which views predict takes
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for size in sizes:
                photo = noisy_photo(size, kind=kind)
                source = saved_photo(photo, Path(folder) / f"{kind}-{size:g}mp.png")
                target = Path(folder) / "restored.png"
                run = run_child("denoise.predict", [f"input={source}", f"output={target}"])
                what = (
                    f"predict, default settings, launch to exit: {photo_label(photo, kind)} "
                    f"({photo[0].numel() / 1e6:.3g} MP; its own views: "
                    f"{chosen_views(restorer, photo)})"
                )
                value = math.nan if run.failure else run.seconds
                note = run.failure or f"peak RSS {run.peak_gib:.2f} GiB"
                limit = wait_target(size)
                target = "" if limit is None else within(value, limit, "s")
                rows.append(Row("photos", what, value, "s", note, target))
    return rows


def command_names() -> list[str]:
    """Every command: each top-level module of the package is one (``denoise/<command>.py``)."""
    import denoise

    return [module.name for module in pkgutil.iter_modules(denoise.__path__) if not module.ispkg]


def startup_rows() -> list[Row]:
    """Start-up, launch to exit in child processes: each command's ``--help``, and predict
    on a picture of one tile in one pass (so the rest of its time is start-up)."""
    rows = []
    for name in command_names():
        run = run_child(f"denoise.{name}", ["--help"])
        value = math.nan if run.failure else run.seconds
        what = f"python -m denoise.{name} --help"
        rows.append(
            Row("start-up", what, value, "s", run.failure, within(value, HELP_SECONDS, "s"))
        )
    with tempfile.TemporaryDirectory() as folder:
        picture = noisy_photo(START_SIDE**2 / 1e6)
        source = saved_photo(picture, Path(folder) / "small.png")
        target = Path(folder) / "restored.png"
        arguments = [f"input={source}", f"output={target}", "self_ensemble=1"]
        run = run_child("denoise.predict", arguments)
    value = math.nan if run.failure else run.seconds
    what = f"python -m denoise.predict, launch to exit: {photo_label(picture, GREY)}, one view"
    target = within(value, PREDICT_START_SECONDS, "s")
    rows.append(Row("start-up", what, value, "s", run.failure, target))
    return rows


def bench_csv(cfg: DictConfig, folder: Path) -> str:
    """The CSV to measure: the one given, the real FER2013 beside the repo, else a
    generated one of the same size."""
    if cfg.csv_path:
        return str(cfg.csv_path)
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013.csv.xz"
    if shared.exists():
        return str(shared)
    rng = np.random.default_rng(0)
    usages = ["Training"] * 28709 + ["PrivateTest"] * 3589 + ["PublicTest"] * 3589
    pixels = [" ".join(map(str, row)) for row in rng.integers(0, 256, (len(usages), 2304))]
    path = folder / "generated_fer_size.csv"
    pd.DataFrame({"emotion": 0, "pixels": pixels, "Usage": usages}).to_csv(path, index=False)
    return str(path)


def machine_rows() -> list[Row]:
    """What the figures were measured on, and what decides the fast precision."""
    native, isa = bf16_hardware()
    rows = [
        Row("machine", "processor", cpu_name(), ""),
        Row("machine", "torch threads", torch.get_num_threads(), ""),
        Row("machine", "ATen CPU capability", torch.backends.cpu.get_cpu_capability(), ""),
        Row("machine", "bf16 hardware", f"{'yes' if native else 'no'} ({isa})", ""),
        Row("machine", "training precision by default", default_precision()[0], ""),
    ]
    rows += [Row("machine", f"oneDNN {key}", value, "") for key, value in onednn_isa().items()]
    return rows


def run_bench(cfg: DictConfig) -> list[Row]:
    torch.manual_seed(0)
    seconds = float(cfg.min_seconds)
    precisions = list(cfg.precisions)
    rows = machine_rows()

    module: DenoisingModule = instantiate(cfg.model)
    batch, ref = int(cfg.data.batch_size), cfg.reference
    reference = DenoisingModule(in_channels=ref.channels, out_channels=ref.channels)
    shipped = load_denoiser(None, "cpu", weights=FACES)  # the face model
    shipped_design = DenoisingModule(**shipped.hparams)  # fresh weights
    setups = [
        ("default model (48×48×1)", module, batch, 48, module.hparams.in_channels),
        ("shipped blind design (48×48×1)", shipped_design, batch, 48, 1),
        (
            f"reference U-Net ({ref.image_size}×{ref.image_size}×{ref.channels})",
            reference,
            int(ref.batch_size),
            int(ref.image_size),
            int(ref.channels),
        ),
    ]
    step_seconds = 0.0
    for precision in precisions:
        plain = plain_conv_ceiling(seconds, precision)
        rows.append(
            Row(
                "ceiling",
                f"{precision}: one 3×3 conv 64→64, 48×48, batch 32, fwd+bwd, channels_last",
                plain,
                "GFLOP/s",
            )
        )
        for label, model, size_batch, size, channels in setups:
            if precision != "fp32" and model is reference:
                continue  # 128×128×3: long to time, and the 48×48 rows tell the same
            example = torch.rand(size_batch, channels, size, size)
            ceiling = conv_ceiling(model.net, example, True, seconds, precision)
            what = f"{precision}: {label}"
            rows.append(
                Row("ceiling", f"{what}: its convolutions alone, fwd+bwd", ceiling, "GFLOP/s")
            )
            images, gflops = training_step(model, size_batch, size, channels, seconds, precision)
            rows.append(Row("training", f"{what}, batch {size_batch}", images, "images/s"))
            rows.append(
                Row(
                    "training",
                    f"{what}, batch {size_batch}",
                    gflops,
                    "GFLOP/s",
                    f"{100 * gflops / ceiling:.0f}% of its {precision} conv ceiling",
                    "≥ 80%" if model is module else "",
                )
            )
            if model is module and precision == "fp32":
                step_seconds = size_batch / images

    with tempfile.TemporaryDirectory() as folder:
        csv_path = bench_csv(cfg, Path(folder))
        datamodule: FERDataModule = instantiate(cfg.data, csv_path=csv_path, cache_dir=folder)
        rows += data_figures(csv_path, datamodule, step_seconds, seconds)
        if cfg.peak_memory_batches:
            rss = peak_training_rss(csv_path, int(cfg.peak_memory_batches))
            rows.append(
                Row(
                    "memory",
                    f"peak RSS, training on {Path(csv_path).name} "
                    f"({cfg.peak_memory_batches} batches)",
                    rss,
                    "GiB",
                    target="≤ 2 GB",
                )
            )

    rows += inference_rows("default model", module, cfg, seconds, precisions)
    rows += inference_rows("shipped blind model", shipped, cfg, seconds, precisions)
    rows += photo_rows(cfg, seconds)
    if cfg.startup:
        rows += startup_rows()
    return rows


def inference_rows(
    label: str, module: DenoisingModule, cfg: DictConfig, seconds: float, precisions: list[str]
) -> list[Row]:
    """Inference images/s per engine and batch size, as a share of the forward-only
    ceiling of the model's own convolutions at batch 256 in the engine's precision."""
    channels = module.hparams.in_channels
    example = torch.rand(256, channels, 48, 48)
    flops_per_image = count_flops(lambda: module.eval()(torch.rand(1, channels, 48, 48))) / 1e9
    rows = [Row("inference", f"{label}: forward FLOPs per 48×48 image", flops_per_image, "GFLOP")]
    ceilings = {}
    for precision in precisions:
        ceilings[precision] = conv_ceiling(module.net, example, False, seconds, precision)
        rows.append(
            Row(
                "ceiling",
                f"{precision}: {label}: its convolutions alone, forward only, batch 256",
                ceilings[precision],
                "GFLOP/s",
            )
        )
    rates = inference_rates(module, list(cfg.inference_batches), seconds, bool(cfg.compile))
    if "bf16" in precisions:
        rates["channels_last, bf16 autocast"] = bf16_rates(
            module, list(cfg.inference_batches), seconds
        )
    for engine, by_batch in rates.items():
        precision = "bf16" if "bf16" in engine else "fp32"
        if precision not in ceilings:
            continue
        for size_batch, images in by_batch.items():
            ratio = (
                f"{100 * images * flops_per_image / ceilings[precision]:.0f}% of the "
                f"{precision} conv ceiling"
                if images == images
                else "not available"
            )
            target = "≥ 85%" if size_batch == 256 else ""
            what = f"{label}, {engine}, batch {size_batch}"
            rows.append(Row("inference", what, images, "images/s", ratio, target))
    return rows


def bf16_rates(module: DenoisingModule, batches: list[int], min_seconds: float) -> dict[int, float]:
    """Images/s of the channels_last model under bf16 autocast (fp32 weights and output)."""
    fast = copy.deepcopy(module).eval()
    channels = module.hparams.in_channels
    rates = {}
    for batch in batches:
        x = torch.rand(batch, channels, 48, 48)

        def call(x: torch.Tensor = x) -> None:
            with torch.inference_mode(), in_precision("bf16"):
                fast(x)

        rates[batch] = batch / seconds_per_call(call, min_seconds)
    return rates


def _shown(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"


def markdown(rows: list[Row]) -> str:
    lines = ["| section | what | value | unit | ratio | target |", "|---|---|---:|---|---|---|"]
    lines += [
        f"| {r.section} | {r.what} | {_shown(r.value)} | {r.unit} | {r.ratio} | {r.target} |"
        for r in rows
    ]
    return "\n".join(lines)


def check_bench_settings(cfg: DictConfig) -> None:
    """Every value that would fail minutes into the benchmark, checked before it starts."""
    if cfg.get("csv_path") and not Path(cfg.csv_path).expanduser().is_file():
        raise SettingError(f"csv_path={cfg.csv_path}: no such file")
    positive_number(cfg, "min_seconds")
    batches = setting(cfg, "inference_batches")
    if (
        not isinstance(batches, list)
        or not batches
        or not all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in batches
        )
    ):
        raise SettingError(f"inference_batches={batches}: must be a list of batch sizes >= 1")
    whole_number(cfg, "peak_memory_batches", minimum=0)
    chosen = setting(cfg, "precisions")
    if not isinstance(chosen, list) or not chosen or not set(chosen) <= set(PRECISIONS):
        raise SettingError(f"precisions={chosen}: must be a list of {' and '.join(PRECISIONS)}")
    for key in ("image_size", "channels", "batch_size"):
        whole_number(cfg, f"reference.{key}")
    positive_number(cfg, "photos.megapixels")
    some_of(cfg, "photos.views", VIEW_COUNTS, "counts")
    some_of(cfg, "photos.engines", ENGINES, "engines")
    positive_numbers(cfg, "photos.memory_megapixels", what="sizes", allow_empty=True)
    positive_numbers(cfg, "photos.whole_megapixels", what="sizes", allow_empty=True)
    some_of(cfg, "photos.whole_kinds", PHOTO_KINDS, "kinds")
    true_or_false(cfg, "startup")
    check_data_settings(cfg)


def bench(cfg: DictConfig) -> None:
    """Measure every row, then write bench.md and bench.json and print the table."""
    output = Path(cfg.paths.output_dir)
    print(f"This benchmark writes into {absolute(output)}")
    check_bench_settings(cfg)
    rows = run_bench(cfg)
    output.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    (output / "bench.md").write_text(table + "\n")
    (output / "bench.json").write_text(json.dumps([asdict(row) for row in rows], indent=2))
    print(table)
    print("\n" + folder_listing(output, "Outputs of this benchmark in"))
