"""Heads: DINO head normalisation/weight-norm, linear and attentive classifiers."""

from __future__ import annotations

import pytest
import torch

from fmct.models.heads import AttentiveClassifier, DINOHead, LinearClassifier


def test_dino_head_shapes_and_weight_norm() -> None:
    h = DINOHead(48, 100, hidden_dim=64, bottleneck_dim=16, nlayers=3)
    x = torch.randn(5, 48)
    y = h(x)
    assert y.shape == (5, 100)
    assert y.abs().max() <= 1.0 + 1e-5  # cosine between unit bottleneck and unit prototypes
    # scaling prototype rows does not change the output (g fixed to 1)
    with torch.no_grad():
        h.last_layer.weight.mul_(torch.rand(100, 1) * 10 + 0.1)
    torch.testing.assert_close(h(x), y)
    # patch tokens (B, N, D) work too (iBOT)
    assert h(torch.randn(2, 7, 48)).shape == (2, 7, 100)
    assert DINOHead(48, 10, nlayers=1, bottleneck_dim=8)(x).shape == (5, 10)
    assert not any("bias" in n for n, _ in h.last_layer.named_parameters())


def test_dino_head_gradients() -> None:
    h = DINOHead(48, 20, hidden_dim=32, bottleneck_dim=8)
    h(torch.randn(4, 48)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in h.parameters())


def test_dino_head_batch_norm_separates_near_identical_inputs() -> None:
    """Inputs that differ by 1e-3 (CLS tokens of alike head CTs at init) get the same scores from a plain
    head but clearly different ones with batch statistics, in train and eval mode alike."""
    torch.manual_seed(0)
    base = torch.randn(1, 48)
    x = base + 1e-3 * torch.randn(8, 48)
    plain = DINOHead(48, 32, hidden_dim=64, bottleneck_dim=16)
    bn = DINOHead(48, 32, hidden_dim=64, bottleneck_dim=16, norm="batch")
    lin = [m for m in plain.mlp if isinstance(m, torch.nn.Linear)]
    lin_bn = [m for m in bn.mlp if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():  # same linear weights and prototypes
        for a, b in zip(lin, lin_bn, strict=True):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        bn.last_layer.weight.copy_(plain.last_layer.weight)
    spread_plain = plain(x).std(0).mean()
    for mode in (True, False):
        bn.train(mode)
        assert bn(x).std(0).mean() > 100 * spread_plain
    with pytest.raises(ValueError, match="rows"):
        bn(torch.randn(2, 3, 48))


def test_dino_head_batch_norm_with_fewer_than_two_rows() -> None:
    """0 or 1 rows (an iBOT step with 0 / 1 masked patches): (N, K) scores, finite; one row gets the limit of
    batch standardisation (centred = 0), i.e. the same scores whatever the row; gradients reach the head."""
    torch.manual_seed(0)
    bn = DINOHead(48, 32, hidden_dim=64, bottleneck_dim=16, norm="batch")
    assert bn(torch.randn(0, 48)).shape == (0, 32)
    a, b = bn(torch.randn(1, 48)), bn(torch.randn(1, 48))
    assert a.shape == (1, 32) and torch.isfinite(a).all() and torch.allclose(a, b)
    a.sum().backward()
    assert all(p.grad is not None for p in bn.last_layer.parameters())
    with pytest.raises(ValueError, match="norm"):
        DINOHead(48, 32, norm="layer")


def test_linear_classifier() -> None:
    c = LinearClassifier(48, 12)
    assert c(torch.randn(3, 48)).shape == (3, 12)


def test_attentive_classifier() -> None:
    torch.manual_seed(0)
    c = AttentiveClassifier(48, 12, num_heads=4).eval()
    tokens = torch.randn(3, 20, 48)
    y = c(tokens)
    assert y.shape == (3, 12)
    a = c.attention(tokens)
    assert a.shape == (3, 4, 20)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 4))
    # permutation invariant over tokens
    torch.testing.assert_close(c(tokens[:, torch.randperm(20)]), y, atol=1e-5, rtol=1e-4)
    y.sum().backward()
    assert c.query.grad is not None and c.query.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        c(torch.randn(3, 48))
