"""3D block masks (iBOT) and random masks (MAE)."""

from __future__ import annotations

import pytest
import torch

from fmct.ssl.masking import block_mask_3d, ibot_masks, masked_ratios, random_masking


def test_block_mask_never_exceeds_target_and_gets_close() -> None:
    g = torch.Generator().manual_seed(0)
    for target in (5, 30, 100, 200):
        m = block_mask_3d((8, 8, 8), target, g)
        assert m.shape == (8, 8, 8) and m.dtype == torch.bool
        assert target * 0.5 <= int(m.sum()) <= target


def test_block_mask_is_blocky() -> None:
    """Masked patches cluster: most masked voxels have a masked 6-neighbour (random masks would not)."""
    g = torch.Generator().manual_seed(1)
    m = block_mask_3d((8, 8, 8), 128, g)
    pad = torch.nn.functional.pad(m[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0]
    nb = sum(pad.roll(s, d)[1:-1, 1:-1, 1:-1] for d in range(3) for s in (1, -1))
    share = float(((nb > 0) & m).sum() / m.sum())
    assert share > 0.95


def test_ibot_masks_share_and_ratios() -> None:
    g = torch.Generator().manual_seed(0)
    masks = ibot_masks(8, (4, 4, 4), (0.1, 0.5), 0.5, g)
    assert masks.shape == (8, 64)
    masked = masks.any(dim=1)
    assert int(masked.sum()) == 4
    ratios = masks.float().mean(dim=1)[masked]
    assert float(ratios.max()) <= 0.5 and float(ratios.min()) > 0.0
    assert not masks[~masked].any()
    # deterministic from the generator
    again = ibot_masks(8, (4, 4, 4), (0.1, 0.5), 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_random_masking_roundtrip() -> None:
    keep, mask, restore = random_masking(3, 64, 0.75, torch.Generator().manual_seed(0))
    assert keep.shape == (3, 16) and mask.shape == (3, 64)
    assert int(mask.sum()) == 3 * 48
    for b in range(3):
        assert not mask[b, keep[b]].any()
        masked_idx = mask[b].nonzero()[:, 0]
        order = torch.cat([keep[b], masked_idx])
        assert torch.equal(order[restore[b]], torch.arange(64))


def test_masked_ratios_are_drawn_inside_their_bins() -> None:
    """(0.1, 0.5) in 3 bins: [0.1, 0.233), [0.233, 0.367), [0.367, 0.5]; each ratio inside its own bin,
    and over many draws the mean is the range's midpoint 0.3 (the bins' lower edges would give 0.233)."""
    g = torch.Generator().manual_seed(0)
    edges = [0.1, 0.1 + 0.4 / 3, 0.1 + 0.8 / 3, 0.5]
    draws = torch.stack([masked_ratios(3, (0.1, 0.5), g) for _ in range(2000)])
    for i in range(3):
        assert float(draws[:, i].min()) >= edges[i] - 1e-6 and float(draws[:, i].max()) <= edges[i + 1] + 1e-6
        # spread over the bin, not pinned to an edge
        assert float(draws[:, i].max() - draws[:, i].min()) > 0.9 * (edges[i + 1] - edges[i])
    assert abs(float(draws.mean()) - 0.3) < 0.005
    one = torch.stack([masked_ratios(1, (0.1, 0.5), g) for _ in range(2000)])
    assert abs(float(one.mean()) - 0.3) < 0.01 and float(one.min()) < 0.12 and float(one.max()) > 0.48


def test_ibot_masks_mean_ratio_near_midpoint() -> None:
    """Masked images of 3-image batches on a 6^3 grid mask ~0.3 of their patches on average (block masks
    may fall a little short of their target, never above it)."""
    g = torch.Generator().manual_seed(0)
    fr = torch.cat([ibot_masks(3, (6, 6, 6), (0.1, 0.5), 1.0, g).float().mean(dim=1) for _ in range(300)])
    assert 0.26 < float(fr.mean()) <= 0.3


def test_mask_params_are_checked() -> None:
    for bad in ((0.5, 0.1), (-0.1, 0.5), (0.1, 1.5)):
        with pytest.raises(ValueError, match="mask_ratio"):
            ibot_masks(2, (2, 2, 2), bad, 0.5)
    with pytest.raises(ValueError, match="mask_probability"):
        ibot_masks(2, (2, 2, 2), (0.1, 0.5), 1.5)
