"""The one list of readouts: names, widths, and the torch pooling of each (``brain_stats`` included)."""

from __future__ import annotations

import pytest
import torch

from fmct.models.hub import ClassifierModel
from fmct.models.readout import BRAIN_READOUTS, READOUTS, pool_tokens, readout_width
from fmct.preprocess.brain_mask import brain_max_tokens, input_patch_fractions, inside_patches
from fmct.preprocess.windows import apply_windows


def test_every_readout_has_a_width_and_brain_max_stays_the_default() -> None:
    assert READOUTS[0] == "brain_max" and set(BRAIN_READOUTS) <= set(READOUTS)
    widths = {r: readout_width(r, 8) for r in READOUTS}
    assert widths == {"brain_max": 8, "cls": 8, "mean_patch": 8, "cls+mean": 16, "brain_stats": 24}
    assert readout_width("mean", 8) == 8  # the older name
    out = {"cls": torch.randn(2, 8), "patch": torch.randn(2, 5, 8)}
    fractions = torch.tensor([[1.0, 1.0, 0.0, 0.95, 0.1], [0.2, 0.5, 0.3, 0.4, 0.1]])
    for r in READOUTS:
        assert pool_tokens(out, r, fractions).shape == (2, readout_width(r, 8)), r
    stats = pool_tokens(out, "brain_stats", fractions)
    used = out["patch"][0, [0, 1, 3]]  # the patches >= 90 % inside; scan 1: its most inside patch alone
    torch.testing.assert_close(stats[0], torch.cat([used.mean(0), used.std(0, unbiased=False), used.amax(0)]))
    torch.testing.assert_close(stats[1], torch.cat([out["patch"][1, 1], torch.zeros(8), out["patch"][1, 1]]))
    torch.testing.assert_close(stats[:, 16:], brain_max_tokens(out["patch"], fractions))
    for r in BRAIN_READOUTS:
        with pytest.raises(ValueError, match=f"the {r} readout needs the patches' intracranial fractions"):
            pool_tokens(out, r)


def test_a_brain_stats_head_reads_the_cavity_of_its_input_and_fine_tunes(tiny_vit, preprocessing) -> None:
    """A linear head on brain_stats is 3D wide, finds the cavity in each input as brain_max does, and passes
    finite gradients to the backbone (fine-tuning)."""
    c = torch.arange(16) - 7.5
    r = (c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).sqrt()
    hu = torch.full((16, 16, 16), -1000.0)
    hu[r < 8], hu[r < 7], hu[r < 5.5] = 40.0, 1200.0, 30.0  # scalp, skull, brain
    x = torch.stack([apply_windows(hu, preprocessing["windows"]), torch.rand(3, 16, 16, 16)])
    clf = ClassifierModel.from_backbone(
        tiny_vit, ["ich", "mass"], pooling="brain_stats", preprocessing=preprocessing
    )
    assert clf.head_config == {"type": "linear", "in_features": 72, "pooling": "brain_stats"}
    out = clf.backbone.forward_features(x)
    grid = clf.backbone.grid_size(x.shape)
    fractions = input_patch_fractions(x, preprocessing["windows"], grid)
    assert int(inside_patches(fractions.numpy())[0].sum()) == 8  # the phantom's brain: 8 of 64 patches
    feats = clf.pool_output(out, x, "brain_stats")
    torch.testing.assert_close(feats, pool_tokens(out, "brain_stats", fractions))
    torch.testing.assert_close(feats[:, 48:], clf.pool_output(out, x, "brain_max"))
    clf.train()
    clf(x).sum().backward()
    grads = [p.grad for p in clf.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
