"""Projection and classification heads.

- :class:`DINOHead`: MLP -> L2-normalised bottleneck -> weight-normalised prototypes (DINO on CLS, iBOT on
  patch tokens). Works on any leading dims: ``(..., in_dim) -> (..., K)``.
- :class:`LinearClassifier`: ``(B, F) -> (B, L)`` logits.
- :class:`AttentiveClassifier`: one learned query cross-attends to tokens ``(B, N, D) -> (B, L)`` logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with weight normalisation and the gain fixed to 1: ``w = v / ||v||`` per row.

    ``weight``: ``(out_features, in_features)`` direction parameter ``v``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class DINOHead(nn.Module):
    """DINO / iBOT projection head: ``(..., in_dim) -> (..., out_dim)`` prototype scores.

    ``nlayers`` linear layers (GELU between) map to ``bottleneck_dim``; the bottleneck is L2-normalised
    and scored against ``out_dim`` (K) unit-norm prototypes, so outputs lie in ``[-1, 1]``.

    ``norm="batch"`` standardises each hidden layer over the rows of the call (batch statistics in train
    *and* eval mode, no running averages; DINO's ``use_bn``). Head CTs look alike, so at initialisation the
    CLS tokens of different scans are nearly identical (mean cosine ~0.999) and an un-normalised head gives
    the teacher the same scores for every scan: centred / Sinkhorn targets are then uniform and the DINO
    loss sits at ``log K``. Batch statistics rescale the between-scan differences to unit variance. The
    call then needs at least 2 rows. Measured on the demo store (tiny ViT, K = 256): the teacher entropy at
    step 0 drops from 5.54 to 3.5-4.3 (log K = 5.55); with EMA centering and near-identical global views
    (configs/demo-cpu.yaml) the DINO loss then falls to 4.8-5.1 in 100-150 steps, while without this head it
    stays at log K (docs/results.md, "What makes DINO learn at CPU scale").

    With fewer than 2 rows (an iBOT call with 0 or 1 masked patches) batch statistics are undefined; the
    head then uses the limit of batch standardisation, ``x - mean(x) = 0``: each normalised layer outputs its
    bias, so the call still returns ``(rows, K)`` scores and keeps every parameter in the graph (DDP).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm: str = "none",
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError("nlayers must be >= 1")
        if norm not in ("none", "batch"):
            raise ValueError(f"DINOHead norm must be 'none' or 'batch', got {norm!r}")
        self.norm = norm
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                if norm == "batch":
                    layers.append(nn.BatchNorm1d(dims[i + 1], track_running_stats=False))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(_init_linear)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim) -> (..., K)``; with ``norm="batch"``, ``(N, in_dim) -> (N, K)`` for any N >= 0."""
        if self.norm == "batch":
            if x.ndim != 2:
                raise ValueError(f"DINOHead(norm='batch') needs (N, D) rows, got {tuple(x.shape)}")
            if x.shape[0] < 2:
                return self.last_layer(F.normalize(self._mlp_few_rows(x), dim=-1, eps=1e-6))
        z = F.normalize(self.mlp(x), dim=-1, eps=1e-6)
        return self.last_layer(z)

    def _mlp_few_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on ``(N < 2, D)`` rows: batch norm replaced by its ``N -> 1`` limit (centred rows are 0)."""
        for layer in self.mlp:
            if isinstance(layer, nn.BatchNorm1d):
                x = x * 0.0 * layer.weight + layer.bias  # centred rows are 0; the graph is kept (DDP)
            else:
                x = layer(x)
        return x


class LinearClassifier(nn.Module):
    """Linear probe on pooled features: ``(B, in_dim) -> (B, n_labels)`` logits (multi-label)."""

    def __init__(self, in_dim: int, n_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.n_labels = n_labels
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(in_dim, n_labels)
        _init_linear(self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x))


class AttentiveClassifier(nn.Module):
    """Attentive probe: a learned query cross-attends to tokens, then a linear layer gives logits.

    ``forward(tokens (B, N, dim)) -> (B, n_labels)``; ``attention(tokens) -> (B, H, N)`` weights (sum 1).
    """

    def __init__(self, dim: int, n_labels: int, num_heads: int = 4, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.n_labels = n_labels
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm_kv = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm_final = nn.LayerNorm(dim, eps=1e-6)
        self.linear = nn.Linear(dim, n_labels)
        nn.init.trunc_normal_(self.query, std=0.02)
        self.apply(_init_linear)

    def _qkv(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = tokens.shape
        h, hd = self.num_heads, self.head_dim
        q = self.q(self.query).reshape(1, 1, h, hd).transpose(1, 2).expand(b, -1, -1, -1)  # (B,H,1,hd)
        kv = self.kv(self.norm_kv(tokens)).reshape(b, n, 2, h, hd).permute(2, 0, 3, 1, 4)
        return q, kv[0], kv[1]

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention weights of the query over the tokens: ``(B, N, dim) -> (B, H, N)``."""
        q, k, _ = self._qkv(tokens)
        return torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1)[:, :, 0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.dim:
            raise ValueError(f"expected tokens (B, N, {self.dim}), got {tuple(tokens.shape)}")
        b = tokens.shape[0]
        q, k, v = self._qkv(tokens)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, self.dim)
        x = self.query[:, 0].expand(b, -1) + self.proj(o)
        x = x + self.mlp(self.norm_out(x))
        return self.linear(self.norm_final(x))
