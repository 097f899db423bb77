"""The corruption-aware model: exact pass-through of clean pixels, a sound first guess,
and a loss that weighs every image's PSNR alike."""

from __future__ import annotations

import pytest
import torch
from conftest import smooth_images

from denoise.data.noise import add_salt_and_pepper, candidate_mask
from denoise.models.corruption_aware import (
    CorruptionAwareUNet,
    gaussian_kernel,
    normalized_convolution_fill,
    separable_blur,
)
from denoise.models.losses import NegativePSNRLoss, NegativePSNRWithL1Loss, make_loss
from denoise.models.metrics import image_metrics
from denoise.models.module import DenoisingModule
from denoise.models.networks import Design, build_network

KERNELS = [gaussian_kernel(sigma) for sigma in (1.0, 2.0, 4.0, 8.0)]


def test_candidates_are_exactly_the_black_and_white_pixels() -> None:
    """The prototype took values within half an 8-bit level; that also flagged float
    pixels near 0 or 1, which salt and pepper never produce."""
    images = torch.tensor([[[[0.0, 1 / 255, 0.5], [254 / 255, 1.0, 0.0]]]])
    expected = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]]])
    assert torch.equal(candidate_mask(images), expected)


@pytest.mark.parametrize("missing", [0.02, 0.5, 0.95])
def test_fill_recovers_a_constant_image_from_any_share_of_pixels(missing: float) -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.full((2, 1, 48, 48), 0.3)
    valid = (torch.rand(images.shape, generator=generator) >= missing).float()
    estimate = normalized_convolution_fill(images * valid, valid, KERNELS)
    torch.testing.assert_close(estimate, images, atol=1e-5, rtol=0)


def test_fill_follows_a_ramp_better_than_a_flat_guess() -> None:
    generator = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, 48).expand(1, 1, 48, 48).contiguous()
    valid = (torch.rand(ramp.shape, generator=generator) >= 0.3).float()
    estimate = normalized_convolution_fill(ramp, valid, KERNELS)
    holes = valid == 0
    assert (estimate - ramp)[holes].abs().mean() < 0.01  # a flat 0.5 guess is off by 0.25


def test_fill_is_mid_grey_where_a_plane_has_no_valid_pixel() -> None:
    images = torch.rand(1, 2, 8, 8)
    valid = torch.zeros_like(images)
    valid[:, 0] = 1.0
    estimate = normalized_convolution_fill(images, valid, KERNELS)
    torch.testing.assert_close(estimate[:, 1], torch.full((1, 8, 8), 0.5))


@pytest.mark.parametrize("channels", [1, 3])
def test_untouched_pixels_pass_through_bit_for_bit(channels: int) -> None:
    torch.manual_seed(0)
    model = CorruptionAwareUNet(channels, base_channels=4, depth=3).eval()
    clean = torch.rand(2, channels, 20, 28) * 0.9 + 0.05  # no black or white pixel
    noisy = add_salt_and_pepper(clean, 0.3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        restored = model(noisy)
    untouched = candidate_mask(noisy) == 0
    assert untouched.float().mean() > 0.6
    assert torch.equal(restored[untouched], noisy[untouched])
    assert not torch.equal(restored[~untouched], noisy[~untouched])  # candidates are rewritten


def test_channels_last_gives_the_same_output_as_contiguous() -> None:
    torch.manual_seed(0)
    model = CorruptionAwareUNet(1, base_channels=4, depth=3).eval()
    noisy = add_salt_and_pepper(torch.rand(2, 1, 16, 16), 0.2)
    with torch.no_grad():
        expected = model(noisy)
        model = model.to(memory_format=torch.channels_last)
        actual = model(noisy)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_module_builds_either_architecture_and_rejects_unknown_ones() -> None:
    def network(architecture: str, **settings: object) -> torch.nn.Module:
        flat = {"base_channels": 4, "depth": 2, "dropout": 0.0, **settings}
        return Design.from_settings({"architecture": architecture, **flat}).network()

    reference, aware = network("unet"), network("corruption_aware")
    assert isinstance(aware, CorruptionAwareUNet) and not isinstance(reference, CorruptionAwareUNet)
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        network("resnet")
    with pytest.raises(ValueError, match="in_channels"):
        network("corruption_aware", in_channels=3, out_channels=1)
    with pytest.raises(ValueError, match=r"not an nn\.Module class"):
        build_network({"_target_": "os.system", "command": "true"})


def test_corruption_aware_module_learns_on_noisy_batches() -> None:
    torch.manual_seed(0)
    module = DenoisingModule(
        base_channels=4, depth=3, dropout=0.0, architecture="corruption_aware", loss="psnr"
    )
    optimizer = module.configure_optimizers()
    clean = torch.rand(8, 1, 16, 16).mul(0.8).add(0.1)
    generator = torch.Generator().manual_seed(3)
    losses = []
    for _ in range(30):
        noisy = add_salt_and_pepper(clean, (0.1, 0.5), generator=generator)
        loss = module.loss(module(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0  # at least 1 dB better


def test_psnr_loss_is_minus_the_mean_per_image_psnr() -> None:
    clean = torch.rand(3, 1, 8, 8)
    restored = clean + torch.tensor([0.1, 0.01, 0.03]).view(3, 1, 1, 1)
    metrics = image_metrics()
    metrics.update(restored, clean)
    loss = NegativePSNRLoss(floor=0.0)(restored, clean)
    assert loss.item() == pytest.approx(-metrics.compute()["psnr"].item(), abs=1e-3)


def test_psnr_loss_floor_bounds_exact_images() -> None:
    clean = torch.rand(2, 1, 8, 8)
    restored = clean.clone().requires_grad_()
    loss = NegativePSNRLoss(floor=1e-6)(restored, clean)
    loss.backward()
    assert loss.item() == pytest.approx(-60.0)
    assert torch.isfinite(restored.grad).all()


def test_psnr_l1_loss_averages_the_psnr_and_its_l1_counterpart_per_image() -> None:
    clean = torch.rand(2, 1, 8, 8)
    error = torch.zeros(2, 1, 8, 8)
    error[0, 0, 0, :4] = 0.4  # one image: a few large errors (RMS 0.1, mean |e| 0.025)
    error[1] = 0.05  # the other: a uniform small error (RMS = mean |e| = 0.05)
    loss = NegativePSNRWithL1Loss(floor=0.0)(clean + error, clean)
    expected = 0.5 * (
        (10 * torch.log10(torch.tensor([0.01, 0.0025]))).mean()
        + (20 * torch.log10(torch.tensor([0.025, 0.05]))).mean()
    )
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)


def test_unknown_loss_is_named() -> None:
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        make_loss("l3")


def test_bf16_inference_keeps_clean_pixels_and_stays_close(monkeypatch) -> None:
    from denoise.inference.checkpoints import SHIPPED_WEIGHTS, load_denoiser

    fp32 = load_denoiser(SHIPPED_WEIGHTS, "cpu", "fp32")
    bf16 = load_denoiser(SHIPPED_WEIGHTS, "cpu", "bf16")
    assert fp32.autocast is None and bf16.autocast is torch.bfloat16
    faces = torch.from_numpy(smooth_images(8)).float().div(255).unsqueeze(1)
    noisy = add_salt_and_pepper(faces, 0.3, generator=torch.Generator().manual_seed(0))
    exact, fast = fp32.denoise(noisy), bf16.denoise(noisy)
    assert fast.dtype == torch.float32
    kept = candidate_mask(noisy) == 0
    assert torch.equal(fast[kept], noisy[kept])  # the blend stays in float32
    assert not torch.equal(fast, exact)  # bf16 did run
    psnr = [image_metrics("")(output, faces)["psnr"].item() for output in (exact, fast)]
    # bf16 costs these very smooth faces (50 dB) about 1.3 dB, FER faces at most 0.023 dB:
    # inference defaults to fp32 (conf/predict.yaml, conf/evaluate.yaml)
    assert psnr[0] - 1.5 < psnr[1] < psnr[0]

    from denoise.runtime import machine

    monkeypatch.setattr(machine, "bf16_hardware", lambda: (True, "AMX"))
    assert load_denoiser(SHIPPED_WEIGHTS, "cpu", "auto").autocast is torch.bfloat16
    monkeypatch.setattr(machine, "bf16_hardware", lambda: (False, "AVX2"))
    assert load_denoiser(SHIPPED_WEIGHTS, "cpu", "auto").autocast is None


def test_the_blur_sums_the_same_in_one_depthwise_convolution_as_plane_by_plane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inference blurs every plane in one grouped convolution; an ONNX export, which needs a
    fixed group count, blurs a batch of single planes: both must give the same sums."""
    images = torch.rand(3, 2, 20, 17, generator=torch.Generator().manual_seed(0))
    kernel = gaussian_kernel(2.0)
    radius = kernel.numel() // 2
    expected = torch.nn.functional.conv2d(
        images.reshape(6, 1, 20, 17),
        kernel.view(1, 1, -1, 1) * kernel.view(1, 1, 1, -1),
        padding=radius,
    ).reshape(3, 2, 20, 17)
    torch.testing.assert_close(separable_blur(images, kernel), expected)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    torch.testing.assert_close(separable_blur(images, kernel), expected)
