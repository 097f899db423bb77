"""Training speed: images/s and GFLOP/s of a full training step for each model set-up, each
against the ceiling of its own convolutions in the same precision."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from denoise.benchmarks.ceilings import conv_ceiling, plain_conv_ceiling
from denoise.benchmarks.table import Row
from denoise.benchmarks.targets import Targets, stated
from denoise.benchmarks.timing import count_flops, in_precision, seconds_per_call
from denoise.data.noise import add_salt_and_pepper
from denoise.models.module import DenoisingModule


@dataclass(frozen=True)
class Setup:
    """A model trained on batches of ``batch`` images of ``size``×``size``×``channels``."""

    label: str
    model: DenoisingModule
    batch: int
    size: int
    channels: int
    fp32_only: bool = False  # long to time in bf16, where smaller set-ups tell the same


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


def training_rows(
    setups: list[Setup],
    precisions: list[str],
    seconds: float,
    targets: Targets,
) -> tuple[list[Row], float]:
    """Per precision: the plain convolution ceiling, then each set-up's own ceiling and its
    training rates; the first set-up (the model being trained) is held to the target. Also
    the seconds of its fp32 step, which the data rows compare their waiting with."""
    rows, step_seconds = [], 0.0
    trained = setups[0].model
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
        for setup in setups:
            if precision != "fp32" and setup.fp32_only:
                continue
            example = torch.rand(setup.batch, setup.channels, setup.size, setup.size)
            ceiling = conv_ceiling(setup.model.net, example, True, seconds, precision)
            what = f"{precision}: {setup.label}"
            rows.append(
                Row("ceiling", f"{what}: its convolutions alone, fwd+bwd", ceiling, "GFLOP/s")
            )
            images, gflops = training_step(
                setup.model, setup.batch, setup.size, setup.channels, seconds, precision
            )
            rows.append(Row("training", f"{what}, batch {setup.batch}", images, "images/s"))
            target = stated("≥", targets.training_ceiling_percent, "%")
            rows.append(
                Row(
                    "training",
                    f"{what}, batch {setup.batch}",
                    gflops,
                    "GFLOP/s",
                    f"{100 * gflops / ceiling:.0f}% of its {precision} conv ceiling",
                    target if setup.model is trained else "",
                )
            )
            if setup.model is trained and precision == "fp32":
                step_seconds = setup.batch / images
    return rows, step_seconds
