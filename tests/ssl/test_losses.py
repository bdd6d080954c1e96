"""DINO / iBOT / KoLeo losses and Sinkhorn-Knopp against hand-computed cases."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fmct.ssl.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss, cross_entropy, sinkhorn_knopp


def test_cross_entropy_one_hot_teacher() -> None:
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[0.0, 0.0, 1.0]])
    expected = -(3.0 / 0.5 - math.log(sum(math.exp(v / 0.5) for v in (1.0, 2.0, 3.0))))
    assert math.isclose(float(cross_entropy(t, s, 0.5)[0]), expected, rel_tol=1e-6)


def test_dino_loss_identical_student_teacher_is_entropy() -> None:
    """Same logits and temperature, no centre: CE(p, p) = H(p) for each pair; same view pairs skipped."""
    torch.manual_seed(0)
    loss = DINOLoss(out_dim=10, student_temp=0.1)
    x = torch.randn(4, 10)
    p = loss.targets(x, temp=0.1)
    h = float(-(p * p.log()).sum(-1).mean())
    got = float(loss([x, x], [p, p]))
    assert math.isclose(got, h, rel_tol=1e-5)
    # a different second view: only cross pairs (0,1) and (1,0) count
    y = torch.randn(4, 10)
    q = loss.targets(y, temp=0.1)
    exp = 0.5 * (float(cross_entropy(q, x, 0.1).mean()) + float(cross_entropy(p, y, 0.1).mean()))
    assert math.isclose(float(loss([x, y], [p, q])), exp, rel_tol=1e-5)


def test_dino_center_ema() -> None:
    loss = DINOLoss(out_dim=3, center_momentum=0.9)
    t = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    loss.update_center(t)
    torch.testing.assert_close(loss.center, torch.tensor([[0.2, 0.2, 0.2]]))
    # centred targets subtract the centre before the softmax
    p = loss.targets(t, temp=1.0)
    torch.testing.assert_close(p, F.softmax(t - 0.2, dim=-1))


def test_sinkhorn_marginals() -> None:
    torch.manual_seed(0)
    scores = torch.randn(16, 8)
    q = sinkhorn_knopp(scores, temp=0.5, n_iters=50)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(16))
    torch.testing.assert_close(q.sum(dim=0), torch.full((8,), 16 / 8), rtol=1e-3, atol=1e-3)
    q3 = sinkhorn_knopp(scores, temp=0.5, n_iters=3)
    torch.testing.assert_close(q3.sum(dim=1), torch.ones(16))
    # a collapsed teacher (every sample prefers prototype 0) is spread over prototypes
    collapsed = torch.zeros(16, 8)
    collapsed[:, 0] = 1.0
    qc = sinkhorn_knopp(collapsed + 0.01 * torch.randn(16, 8), temp=0.1, n_iters=20)
    assert float(qc.sum(dim=0).max()) < 16 / 8 * 1.1


def test_ibot_loss_weights_each_image_equally_over_all_images() -> None:
    """Each masked image's mean CE, summed, over the number of ALL global images (dinov2's reduction):
    3 images, 2 of them masked -> (mean_0 + mean_2) / 3, not / 2."""
    torch.manual_seed(0)
    loss = IBOTPatchLoss(out_dim=5, student_temp=0.1)
    masks = torch.zeros(3, 6, dtype=torch.bool)
    masks[0, :1] = True
    masks[2, :4] = True
    s = torch.randn(5, 5)
    t = F.softmax(torch.randn(5, 5), dim=-1)
    ce = cross_entropy(t, s, 0.1)
    expected = (float(ce[:1].mean()) + float(ce[1:].mean())) / 3
    assert math.isclose(float(loss(s, t, masks)), expected, rel_tol=1e-5)
    assert float(loss(s[:0], t[:0], torch.zeros(3, 6, dtype=torch.bool))) == 0.0


def test_ibot_loss_hand_computed() -> None:
    """Two prototypes, student temperature 1: CE = -sum p log softmax(s). Image 0 masks two patches with
    scores (0, 0) against targets (1, 0) -> CE log 2 each; image 1 is unmasked. Loss = log 2 / 2 images."""
    loss = IBOTPatchLoss(out_dim=2, student_temp=1.0)
    masks = torch.tensor([[True, True, False], [False, False, False]])
    s = torch.zeros(2, 2)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert math.isclose(float(loss(s, t, masks)), math.log(2.0) / 2, rel_tol=1e-6)


def test_koleo_known_points() -> None:
    """Points on a square of the unit circle: each nearest neighbour is at distance sqrt(2)."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]) * 3.0  # scale is normalised away
    got = float(KoLeoLoss()(x))
    assert math.isclose(got, -math.log(math.sqrt(2.0)), rel_tol=1e-5)
    # two points at 60 degrees: distance 1 -> loss 0
    y = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert abs(float(KoLeoLoss()(y))) < 1e-5
    # spreading points lowers the loss
    close = torch.tensor([[1.0, 0.0], [1.0, 0.05], [1.0, -0.05]])
    assert float(KoLeoLoss()(close)) > got
