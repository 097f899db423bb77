"""The error breakdown of ``evaluate``: error by kind of pixel, and the model's detection."""

from __future__ import annotations

import pytest
import torch

from denoise.data.noise import candidate_mask
from denoise.evaluation.scoring import ModelDenoiser, evaluate_denoisers
from denoise.models.metrics import ErrorBreakdown
from denoise.models.module import DenoisingModule


def test_breakdown_splits_the_error_by_kind_of_pixel_and_counts_decisions() -> None:
    clean = torch.full((1, 1, 4, 4), 0.5)
    clean[0, 0, 0, :2] = 0.0  # two genuinely black pixels
    hit = torch.zeros_like(clean, dtype=torch.bool)
    hit[0, 0, 3, :] = True  # four noise pixels
    noisy = torch.where(hit, torch.ones_like(clean), clean)
    restored = clean.clone()
    restored[0, 0, 3, 0] = 1.0  # one noise pixel kept: error 127.5 grey levels
    restored[0, 0, 0, 0] = 10 / 255  # one genuine black pixel replaced: error 10
    judged = hit.clone()
    judged[0, 0, 3, 0] = False
    judged[0, 0, 0, 0] = True

    breakdown = ErrorBreakdown()
    breakdown.update(restored, clean, noisy, hit, judged)
    figures = breakdown.compute()

    assert figures["rms noise"] == pytest.approx((127.5**2 / 4) ** 0.5)
    assert figures["rms black/white"] == pytest.approx((100 / 2) ** 0.5)
    assert figures["rms other"] == 0.0
    total = 127.5**2 + 100
    assert figures["share noise"] == pytest.approx(127.5**2 / total)
    assert figures["share black/white"] == pytest.approx(100 / total)
    assert figures["missed"] == pytest.approx(1 / 4)
    assert figures["false alarms"] == pytest.approx(1 / 2)


def test_a_method_without_decisions_gets_no_detection_figures() -> None:
    clean = torch.full((1, 1, 4, 4), 0.5)
    breakdown = ErrorBreakdown()
    breakdown.update(clean, clean, clean, torch.zeros_like(clean, dtype=torch.bool))
    figures = breakdown.compute()
    assert "missed" not in figures and figures["rms noise"] is None


def test_evaluation_reports_where_the_model_errs_and_what_it_judged_noise() -> None:
    torch.manual_seed(0)
    model = DenoisingModule(architecture="corruption_aware", base_channels=4, depth=2).eval()
    clean = torch.rand(6, 1, 16, 16) * 0.8 + 0.1
    clean[:, :, :2] = 0.0  # genuine black rows

    def replace_every_candidate(noisy: torch.Tensor) -> torch.Tensor:
        return torch.where(candidate_mask(noisy) > 0, torch.full_like(noisy, 0.5), noisy)

    result = evaluate_denoisers(
        clean,
        {"grey fill": replace_every_candidate, "model": ModelDenoiser(model, 4)},
        [0.0, 0.3],
        seed=5,
    )
    fill = result.breakdown["grey fill"]
    assert "missed" not in fill[0.3]
    assert fill[0.0]["share black/white"] == 1.0  # it rewrote the genuine black rows
    assert fill[0.0]["rms black/white"] == pytest.approx(127.5)
    model_figures = result.breakdown["model"][0.3]
    assert 0.0 <= model_figures["missed"] <= 1.0 and 0.0 <= model_figures["false alarms"] <= 1.0
    assert model_figures["rms other"] == 0.0  # the design keeps every other pixel exactly
    assert "| density | noise: RMS / share" in result.breakdown_table("model")
