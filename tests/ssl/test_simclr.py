"""SimCLR: the NT-Xent loss computed by hand, its positives, the meta-architecture's loss on view pairs."""

from __future__ import annotations

import math

import pytest
import torch

from fmct.ssl.simclr import SimCLRMetaArch, nt_xent


def test_nt_xent_matches_a_hand_computation() -> None:
    """Two scans, two views each (view-major rows a0, b0, a1, b1): row i's positive is row (i + 2) mod 4,
    the loss is the mean of -log softmax over the three other rows of cosine / temperature."""
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    t = 0.5
    u = torch.nn.functional.normalize(z, dim=1)
    cos = (u @ u.T).tolist()
    expected = 0.0
    for i in range(4):
        others = [j for j in range(4) if j != i]
        pos = (i + 2) % 4
        denom = sum(math.exp(cos[i][j] / t) for j in others)
        expected += -(cos[i][pos] / t - math.log(denom)) / 4
    loss, top1 = nt_xent(z, t)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    best = [max((j for j in range(4) if j != i), key=lambda j, i=i: cos[i][j]) for i in range(4)]
    assert top1.item() == pytest.approx(sum(b == (i + 2) % 4 for i, b in enumerate(best)) / 4)


def test_nt_xent_is_low_when_positives_match_and_high_when_they_do_not() -> None:
    g = torch.Generator().manual_seed(0)
    scans = torch.randn(8, 16, generator=g)
    matched, top1 = nt_xent(torch.cat([scans, scans + 0.01 * torch.randn(8, 16, generator=g)]), 0.1)
    shuffled, _ = nt_xent(torch.cat([scans, scans.roll(1, dims=0)]), 0.1)
    assert top1.item() == 1.0 and matched.item() < 0.5 < math.log(15) < shuffled.item()


@pytest.mark.parametrize("rows", [2, 5])
def test_nt_xent_needs_two_views_of_two_scans(rows: int) -> None:
    with pytest.raises(ValueError, match="two views of at least 2 scans"):
        nt_xent(torch.randn(rows, 4), 0.1)


def test_meta_arch_loss_on_a_cnn_backbone_trains_only_the_student() -> None:
    """On MONAI's SegResEncoder (CT-FM's CNN): the loss of a batch of view pairs has gradients for the encoder
    and the projection head, the monitors get the pooled features, and there is no teacher to update."""
    from fmct.models.monai_net import MonaiBackbone, segres_encoder_config

    backbone = MonaiBackbone(segres_encoder_config(2, init_filters=4, blocks_down=(1, 1), norm="group"))
    arch = SimCLRMetaArch(backbone, {"proj_hidden_dim": 16, "proj_dim": 8})
    x = torch.rand(6, 2, 16, 16, 16)  # 3 scans x 2 views
    loss, parts, aux = arch.compute_loss({"global": x, "n_global": 2}, {}, torch.Generator())
    loss.backward()
    assert set(parts) == {"nt_xent", "contrastive_top1"} and aux["teacher_cls"].shape == (6, 8)
    assert backbone.net.conv_init.weight.grad is not None and arch.export_backbone() is backbone
    assert not [n for n, _ in arch.state_dict().items() if n.startswith("teacher")]
    with pytest.raises(ValueError, match="exactly 2 views"):
        arch.compute_loss({"global": x, "n_global": 3}, {}, torch.Generator())
