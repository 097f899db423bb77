"""The LightningModule: per-image metrics, swappable optimizers, self-contained checkpoints."""

from __future__ import annotations

import pytest
import torch

from denoise.models.metrics import image_metrics
from denoise.models.module import DenoisingModule


def test_psnr_is_averaged_per_image_not_pooled() -> None:
    clean = torch.full((2, 1, 8, 8), 0.5)
    restored = clean.clone()
    restored[0] += 0.1  # MSE 0.01 -> 20 dB
    restored[1] += 0.001  # MSE 1e-6 -> 60 dB
    metrics = image_metrics()
    metrics.update(restored, clean)
    assert metrics.compute()["psnr"].item() == pytest.approx(40.0, abs=1e-3)  # pooled: 23.0


def test_psnr_is_averaged_per_image_across_batches() -> None:
    clean = torch.full((1, 1, 8, 8), 0.5)
    metrics = image_metrics()
    metrics.update(clean + 0.1, clean)
    metrics.update(clean + 0.001, clean)
    assert metrics.compute()["psnr"].item() == pytest.approx(40.0, abs=1e-3)


def test_optimizer_and_scheduler_come_from_config() -> None:
    module = DenoisingModule(
        base_channels=4,
        depth=2,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9},
        scheduler={
            "_target_": "torch.optim.lr_scheduler.StepLR",
            "step_size": 2,
            "interval": "epoch",
        },
    )
    configured = module.configure_optimizers()
    assert isinstance(configured["optimizer"], torch.optim.SGD)
    assert configured["optimizer"].defaults["lr"] == 0.05
    assert isinstance(configured["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert configured["lr_scheduler"]["interval"] == "epoch"


def test_default_optimizer_is_adam_1e3() -> None:
    optimizer = DenoisingModule(base_channels=4, depth=2).configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 1e-3


def test_denoise_clips_to_valid_range() -> None:
    module = DenoisingModule(base_channels=4, depth=2).eval()
    restored = module.denoise(torch.rand(2, 1, 16, 16) * 4 - 2)
    assert restored.min() >= 0 and restored.max() <= 1


def test_an_exact_restoration_counts_as_100_db_not_infinity() -> None:
    clean = torch.full((2, 1, 8, 8), 0.5)
    restored = clean.clone()
    restored[1] += 0.1  # 20 dB
    metrics = image_metrics()
    metrics.update(restored, clean)
    assert metrics.compute()["psnr"].item() == pytest.approx((100.0 + 20.0) / 2, abs=1e-3)


def test_channels_last_gives_the_same_outputs_and_gradients_as_eager_layout() -> None:
    torch.manual_seed(0)
    fast = DenoisingModule(base_channels=8, depth=3, channels_last=True).eval()
    plain = DenoisingModule(base_channels=8, depth=3, channels_last=False).eval()
    plain.load_state_dict(fast.state_dict())
    noisy = torch.rand(4, 1, 48, 48)
    torch.testing.assert_close(fast(noisy), plain(noisy), rtol=1e-4, atol=1e-5)
    for module in (fast, plain):
        module(noisy).square().mean().backward()
    grads = [(a.grad, b.grad) for a, b in zip(fast.parameters(), plain.parameters(), strict=True)]
    for fast_grad, plain_grad in grads:
        torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-3, atol=1e-5)


def test_device_defaults_follow_the_hardware(monkeypatch) -> None:
    from denoise.runtime import machine
    from denoise.runtime.resolvers import device_default

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(machine, "bf16_hardware", lambda: (False, "AVX2, without AVX512-BF16"))
    assert (device_default("precision"), device_default("pin_memory")) == ("32-true", False)
    assert machine.precision_note("32-true") == (
        "Precision 32-true: this CPU has no bf16 hardware (AVX2, without AVX512-BF16): "
        "bf16 would be slower"
    )
    monkeypatch.setattr(machine, "bf16_hardware", lambda: (True, "AVX512-BF16"))
    assert (device_default("precision"), device_default("pin_memory")) == ("bf16-mixed", False)
    assert machine.precision_note("32-true").startswith(
        "Precision 32-true, as set (the default here would be bf16-mixed: this CPU computes bf16"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Some GPU")
    assert (device_default("precision"), device_default("pin_memory")) == ("bf16-mixed", True)
    with pytest.raises(KeyError, match="unknown device default"):
        device_default("batch_size")


def test_bf16_hardware_is_read_from_the_processor(monkeypatch) -> None:
    from denoise.runtime import machine

    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    for amx, avx512_bf16, expected in [
        (True, False, (True, "AMX")),
        (False, True, (True, "AVX512-BF16")),
        (False, False, (False, None)),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        native, isa = machine.bf16_hardware()
        assert native == expected[0]
        assert isa == expected[1] if expected[1] else "without AVX512-BF16 or AMX" in isa


@pytest.mark.parametrize("score", ["update", "forward"])
def test_metrics_score_in_float32_under_bf16_autocast(score: str) -> None:
    """bf16-mixed training (a GPU's default) runs validation under autocast, where SSIM's
    local variances would cancel in bf16 and come out far too low."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 1, 6, 6, generator=generator)
    clean = torch.nn.functional.interpolate(coarse, size=96, mode="bicubic").clamp(0.0, 1.0)
    restored = (clean + 0.03 * torch.randn(clean.shape, generator=generator)).clamp(0.0, 1.0)

    def scores(autocast: bool) -> dict[str, float]:
        metrics = image_metrics()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if score == "update":
                metrics.update(restored, clean)
                values = metrics.compute()
            else:
                values = metrics(restored, clean)
        return {name: value.item() for name, value in values.items()}

    full, mixed = scores(autocast=False), scores(autocast=True)
    assert mixed == pytest.approx(full, rel=1e-5)
