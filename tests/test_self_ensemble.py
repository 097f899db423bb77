"""Geometric self-ensemble: the eight views, their average, the vote, and what it keeps exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from denoise.data.noise import add_salt_and_pepper, candidate_mask
from denoise.inference.checkpoints import load_denoiser
from denoise.models.self_ensemble import from_view, restore_in_views, to_view


def test_the_eight_views_are_distinct_and_each_is_undone() -> None:
    image = torch.arange(12.0).view(1, 1, 3, 4)  # no symmetry: every view differs
    views = [to_view(image, view) for view in range(8)]
    assert len({tuple(view.flatten().tolist()) for view in views}) == 8
    assert torch.equal(views[1], image.flip(-1))  # 2 views: as given and mirrored
    assert torch.equal(views[3], torch.rot90(image, 2, (-2, -1)))  # 4: upside down too
    assert all(view.shape == (1, 1, 4, 3) for view in views[4:])  # 8: transposed too
    for view, seen in enumerate(views):
        assert torch.equal(from_view(seen, view), image)


def test_the_average_and_the_vote_are_taken_back_in_the_input_orientation() -> None:
    image = torch.full((1, 1, 4, 6), 0.5)

    def marks_top_left(views_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = views_input.clone()
        out[..., 0, 0] = 1.0  # not equivariant: the top-left of each view, a different corner
        judged = torch.zeros_like(views_input, dtype=torch.bool)
        judged[..., 0, 0] = True
        return out, judged

    once, judged_once = restore_in_views(marks_top_left, image, 1)
    assert once[0, 0, 0, 0] == 1.0 and judged_once.sum() == 1
    mirrored, judged_twice = restore_in_views(marks_top_left, image, 2)
    assert mirrored[0, 0, 0, 0] == mirrored[0, 0, 0, -1] == 0.75  # top corners: 1 view of 2
    assert mirrored[0, 0, 1:].eq(0.5).all() and mirrored[0, 0, 0, 1:-1].eq(0.5).all()
    assert not judged_twice.any()  # a tie is no majority
    averaged, judged = restore_in_views(marks_top_left, image, 8)
    corners = averaged[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, torch.full((4,), 0.625))  # each corner: 2 views of 8 set it
    assert averaged[0, 0, 1:-1].eq(0.5).all()
    assert not judged.any()  # 2 votes of 8 are no majority
    four, _ = restore_in_views(marks_top_left, image, 4)
    assert torch.allclose(four[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]], torch.full((4,), 0.625))


def test_a_bad_view_count_is_refused() -> None:
    with pytest.raises(ValueError, match="views=3: must be one of 1, 2, 4, 8"):
        restore_in_views(lambda x: (x, None), torch.zeros(1, 1, 4, 4), 3)


def test_the_shipped_natural_model_keeps_clean_pixels_exact_in_eight_views() -> None:
    weights = Path(__file__).parents[1] / "denoise" / "weights" / "blind-natural.ckpt"
    one, eight = load_denoiser(weights, "cpu"), load_denoiser(weights, "cpu", views=8)
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 40, 56, generator=generator)
    noisy = add_salt_and_pepper(clean, 0.5, generator=generator)
    kept = candidate_mask(noisy) == 0
    single, averaged = one.denoise(noisy), eight.denoise(noisy)
    assert torch.equal(averaged[kept], noisy[kept])  # bit for bit, as in one pass
    assert not torch.equal(averaged, single)  # the views did change the candidates
    assert (averaged - clean).square().mean() < (single - clean).square().mean()
