"""Cranial-cavity mask, per-patch fractions in the ViT's token order, intracranial max / stats pooling."""

import numpy as np
import pytest
import torch

from fmct.models.vit3d import ViT3D, ViT3DConfig
from fmct.preprocess.brain_mask import (
    brain_max_pool,
    brain_max_tokens,
    brain_stats_pool,
    brain_stats_tokens,
    hu_from_channels,
    input_patch_fractions,
    inside_patches,
    intracranial_mask,
    patch_fractions,
)
from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows


def phantom(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Air, a 2-voxel scalp (40 HU), a 3-voxel skull (1200 HU) and a brain (30 HU) with a bleed (70 HU)."""
    c = np.indices((n, n, n)) - (n - 1) / 2
    r = np.sqrt((c**2).sum(0))
    hu = np.full((n, n, n), -1000.0)
    hu[r < 18] = 40.0  # scalp
    hu[r < 16] = 1200.0  # skull
    hu[r < 13] = 30.0  # brain
    hu[(r < 13) & (c[0] > 6) & (np.abs(c[1]) < 3)] = 70.0  # a bleed, still intracranial
    return hu, r


def test_mask_is_the_cavity_not_the_scalp() -> None:
    hu, r = phantom()
    m = intracranial_mask(hu)
    assert m[r < 11].all()  # the cavity less the one-voxel erosion rim, bleed included
    assert not m[r >= 13].any()  # no skull, scalp or air
    assert not intracranial_mask(np.full((8, 8, 8), -1000.0)).any()


def test_patch_fractions_follow_the_vit_token_order() -> None:
    vit = ViT3D(
        ViT3DConfig(img_size=(16, 24, 32), patch_size=8, embed_dim=16, depth=1, num_heads=2, in_chans=1)
    )
    mask = np.zeros((16, 24, 32), bool)
    mask[8:16, 0:8, 16:24] = True  # patch (1, 0, 2) of the (2, 3, 4) grid
    f = patch_fractions(mask, vit.grid_size((1, 1, 16, 24, 32)))
    x = torch.zeros(1, 1, 16, 24, 32)
    base = vit.patch_embed(x)
    x[0, 0, 8:16, 0:8, 16:24] = 1.0
    changed = (vit.patch_embed(x) - base).abs().sum(-1)[0] > 0
    assert f.shape == (24,) and f.max() == 1.0 and f.sum() == 1.0
    assert int(np.argmax(f)) == int(torch.nonzero(changed).item())


def test_brain_max_pool_uses_inside_patches_or_the_most_inside() -> None:
    t = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)  # (B=2, N=3, D=2)
    f = np.array([[1.0, 0.95, 0.2], [0.5, 0.7, 0.1]])
    out = brain_max_pool(t, f)
    np.testing.assert_array_equal(out[0], t[0, :2].max(0))  # patch 2 (outside) left out
    np.testing.assert_array_equal(out[1], t[1, 1])  # none >= 0.9: the most intracranial patch
    with pytest.raises(ValueError, match="fractions"):
        brain_max_pool(t, f[:, :2])


def test_the_cavity_is_found_again_from_windowed_inputs() -> None:
    hu, _ = phantom()
    x = apply_windows(torch.from_numpy(hu).float(), DEFAULT_WINDOWS)[None]  # (1, 3, 40, 40, 40)
    back = hu_from_channels(x, DEFAULT_WINDOWS)[0].numpy()
    soft = (hu > -5) & (hu < 110)
    np.testing.assert_allclose(back[soft], hu[soft], atol=1e-3)
    f = input_patch_fractions(x, DEFAULT_WINDOWS, (5, 5, 5))
    np.testing.assert_array_equal(f[0].numpy(), patch_fractions(intracranial_mask(hu), (5, 5, 5)))
    with pytest.raises(ValueError, match="spanning"):
        hu_from_channels(x[:, :1], DEFAULT_WINDOWS[:1])  # the brain window (0-80 HU) alone
    with pytest.raises(ValueError, match="windows"):
        hu_from_channels(x, DEFAULT_WINDOWS[:2])


def test_torch_brain_max_matches_numpy_and_passes_gradients_to_used_patches_only() -> None:
    t = torch.randn(2, 3, 4, requires_grad=True)
    f = torch.tensor([[1.0, 0.95, 0.2], [0.5, 0.7, 0.1]])
    out = brain_max_tokens(t, f)
    np.testing.assert_array_equal(out.detach().numpy(), brain_max_pool(t.detach().numpy(), f.numpy()))
    out.sum().backward()
    assert t.grad[0, 2].abs().sum() == 0 and t.grad[1, [0, 2]].abs().sum() == 0
    assert t.grad[0, :2].abs().sum() > 0


def stats_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens ``(3, 3, 2)``, fractions ``(3, 3)`` and their ``[mean | std | max]`` worked out by hand."""
    t = np.array(
        [
            [[1, 4], [3, 0], [100, 100]],  # patches 0 and 1 inside; patch 2 (fraction 0.2) left out
            [[9, 9], [5, -2], [7, 7]],  # none >= 0.9: the most intracranial patch (1) alone, std 0
            [[0, 0], [2, 4], [4, 2]],  # no cavity at all: every patch
        ],
        dtype=np.float32,
    )
    f = np.array([[1.0, 0.95, 0.2], [0.5, 0.7, 0.1], [0.0, 0.0, 0.0]])
    s = np.sqrt(8 / 3)  # population std of (0, 2, 4) and of (0, 4, 2)
    want = np.array([[2, 2, 1, 2, 3, 4], [5, -2, 0, 0, 5, -2], [2, 2, s, s, 4, 4]], dtype=np.float32)
    return t, f, want


def test_brain_stats_pool_is_mean_std_max_over_the_brain_max_patches() -> None:
    t, f, want = stats_case()
    out = brain_stats_pool(t, f)
    assert out.shape == (3, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 4:], brain_max_pool(t, f))  # the max third is brain_max
    # on random tokens: numpy's mean / std (ddof=0) / max over exactly the patches brain_max uses
    rng = np.random.default_rng(0)
    t, f = rng.normal(size=(4, 27, 5)).astype(np.float32), rng.uniform(0.5, 1.0, size=(4, 27))
    out = brain_stats_pool(t, f)
    for b, use in enumerate(inside_patches(f)):
        sel = t[b, use]
        np.testing.assert_allclose(out[b], np.r_[sel.mean(0), sel.std(0), sel.max(0)], rtol=1e-5, atol=1e-6)
    t[~inside_patches(f)] = 1e6  # the patches left out change nothing
    np.testing.assert_array_equal(brain_stats_pool(t, f), out)
    with pytest.raises(ValueError, match="fractions"):
        brain_stats_pool(t, f[:, :2])


def test_torch_brain_stats_matches_numpy_with_finite_gradients_on_used_patches_only() -> None:
    t, f, want = stats_case()
    x = torch.from_numpy(t).requires_grad_(True)
    out = brain_stats_tokens(x, torch.from_numpy(f))
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()  # scan 1's std is 0 (one patch): no NaN gradient
    assert x.grad[0, 2].abs().sum() == 0 and x.grad[1, [0, 2]].abs().sum() == 0
    assert x.grad[0, :2].abs().sum() > 0 and x.grad[2].abs().sum() > 0
    half = brain_stats_tokens(
        x.detach().bfloat16(), torch.from_numpy(f)
    )  # reduced in float32, returned in bf16
    assert half.dtype == torch.bfloat16
    np.testing.assert_allclose(half.float().numpy(), want, rtol=1e-2)
