"""Inference speed of a model on 48×48 batches: eager, channels_last, ``torch.compile``, ONNX
Runtime and bf16 autocast, each as a share of the forward-only ceiling of the model's own
convolutions in its precision."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig

from denoise.benchmarks.ceilings import conv_ceiling
from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, stated
from denoise.benchmarks.timing import count_flops, in_precision, seconds_per_call
from denoise.inference.engines import OnnxDenoiser, export_onnx
from denoise.models.denoiser import Restoring
from denoise.models.module import DenoisingModule

TARGET_BATCH = 256  # the batch whose rate is held to the target, and its ceiling's batch


def inference_rates(
    module: DenoisingModule, batches: list[int], min_seconds: float, compile_model: bool = True
) -> dict[str, dict[int, float]]:
    """Images/s per engine and batch size; an engine that cannot run here reports why."""
    channels = module.hparams.net["in_channels"]
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
    engines["ONNX Runtime"] = onnx_engine(eager)
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


def why(error: Exception) -> str:
    """Why an engine cannot run here, in a row's words."""
    return f"not available: {type(error).__name__}: {str(error)[:120]}"


def _unavailable(error: Exception) -> Callable[[torch.Tensor], object]:
    def fail(_: torch.Tensor) -> object:
        raise RuntimeError(why(error))

    return fail


def onnx_engine(module: Restoring) -> Callable[[torch.Tensor], torch.Tensor]:
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


def bf16_rates(module: DenoisingModule, batches: list[int], min_seconds: float) -> dict[int, float]:
    """Images/s of the channels_last model under bf16 autocast (fp32 weights and output)."""
    fast = copy.deepcopy(module).eval()
    channels = module.hparams.net["in_channels"]
    rates = {}
    for batch in batches:
        x = torch.rand(batch, channels, 48, 48)

        def call(x: torch.Tensor = x) -> None:
            with torch.inference_mode(), in_precision("bf16"):
                fast(x)

        rates[batch] = batch / seconds_per_call(call, min_seconds)
    return rates


def inference_rows(
    label: str,
    module: DenoisingModule,
    cfg: DictConfig,
    seconds: float,
    precisions: list[str],
    targets: Targets,
) -> list[Row]:
    """Inference images/s per engine and batch size, as a share of the forward-only
    ceiling of the model's own convolutions at batch 256 in the engine's precision."""
    channels = module.hparams.net["in_channels"]
    example = torch.rand(TARGET_BATCH, channels, 48, 48)
    flops_per_image = count_flops(lambda: module.eval()(torch.rand(1, channels, 48, 48))) / 1e9
    rows = [Row("inference", f"{label}: forward FLOPs per 48×48 image", flops_per_image, "GFLOP")]
    ceilings = {}
    for precision in precisions:
        ceilings[precision] = conv_ceiling(module.net, example, False, seconds, precision)
        rows.append(
            Row(
                "ceiling",
                f"{precision}: {label}: its convolutions alone, forward only, batch {TARGET_BATCH}",
                ceilings[precision],
                "GFLOP/s",
            )
        )
    rates = inference_rates(module, list(cfg.inference_batches), seconds, bool(cfg.compile))
    if "bf16" in precisions:
        rates["channels_last, bf16 autocast"] = bf16_rates(
            module, list(cfg.inference_batches), seconds
        )
    target = stated("≥", targets.inference_ceiling_percent, "%")
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
            what = f"{label}, {engine}, batch {size_batch}"
            shown = target if size_batch == TARGET_BATCH else ""
            rows.append(Row("inference", what, images, "images/s", ratio, shown))
    return rows
