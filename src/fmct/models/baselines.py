"""Supervised baseline backbone: a small 3D ResNet with the same ``forward_features`` interface as ViT3D.

``forward_features(x (B, C, X, Y, Z)) -> {"cls": (B, D) global-average pooled, "patch": (B, N, D) the
flattened last feature map (N = prod of its grid), "registers": (B, 0, D)}``, D = ``widths[-1]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn


@dataclass
class ResNet3DConfig:
    """Architecture of :class:`ResNet3D` (JSON-able). Defaults: a resnet10-like net, widths 16..128.

    The stem is a stride-2 3³ conv; each stage after the first halves the grid, so a 64³ input gives a
    4³ final grid (total stride 16).
    """

    in_chans: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    norm: Literal["group", "batch", "instance"] = "group"
    stem_stride: int = 2
    type: str = field(default="resnet3d", repr=False)

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.blocks = tuple(int(b) for b in self.blocks)
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError(f"widths {self.widths} and blocks {self.blocks} must have the same length")
        if self.norm not in ("group", "batch", "instance"):
            raise ValueError(f"norm must be group/batch/instance, got {self.norm!r}")
        if self.type != "resnet3d":
            raise ValueError(f"ResNet3DConfig.type must be 'resnet3d', got {self.type!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict including ``"type": "resnet3d"``."""
        d = dataclasses.asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResNet3DConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ResNet3DConfig keys: {unknown}")
        return cls(**d)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(ch)
    if kind == "instance":
        return nn.InstanceNorm3d(ch, affine=True)
    return nn.GroupNorm(min(8, ch), ch)


class BasicBlock3D(nn.Module):
    """Two 3³ convs with a residual; a 1³ strided projection when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=stride, bias=False), _norm(norm, cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class ResNet3D(nn.Module):
    """Small 3D ResNet backbone; ``embed_dim`` = last width; ``forward(x) -> (B, D)`` pooled features."""

    def __init__(self, cfg: ResNet3DConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else ResNet3DConfig(**kwargs)
        self.config = cfg
        self.embed_dim = cfg.widths[-1]
        self.depth = len(cfg.widths)
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_chans, w0, 3, stride=cfg.stem_stride, padding=1, bias=False),
            _norm(cfg.norm, w0),
            nn.ReLU(inplace=True),
        )
        stages = []
        cin = w0
        for i, (w, n) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
            blocks = [BasicBlock3D(cin, w, 1 if i == 0 else 2, cfg.norm)]
            blocks += [BasicBlock3D(w, w, 1, cfg.norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(self.embed_dim, eps=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # zero-init the last norm of each residual branch: blocks start as identity
        for m in self.modules():
            if isinstance(m, BasicBlock3D) and isinstance(m.norm2, nn.GroupNorm | nn.BatchNorm3d):
                nn.init.zeros_(m.norm2.weight)

    def grid_size(self, input_shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int]:
        """Final feature-map grid for an input of spatial shape ``(..., X, Y, Z)``."""
        out = []
        for s in input_shape[-3:]:
            s = (int(s) - 1) // self.config.stem_stride + 1
            for _ in range(len(self.stages) - 1):
                s = (s - 1) // 2 + 1
            out.append(s)
        return tuple(out)  # type: ignore[return-value]

    def forward_features(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> dict[str, Any]:
        """``(B, C, X, Y, Z) -> {"cls": (B, D), "patch": (B, N, D), "registers": (B, 0, D)}``.

        ``patch`` tokens are the last feature map (LayerNorm-ed per position); ``cls`` is their mean
        before the norm, then normed. Masking and attention maps are not supported (ViT only).
        """
        if mask is not None or return_attention:
            raise ValueError("ResNet3D does not support token masks or attention maps")
        if x.ndim != 5:
            raise ValueError(f"expected input (B, C, X, Y, Z), got shape {tuple(x.shape)}")
        f = self.stem(x)
        for stage in self.stages:
            f = stage(f)
        tokens = f.flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.norm(tokens.mean(1))
        return {"cls": cls, "patch": self.norm(tokens), "registers": tokens[:, :0]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["cls"]

    def no_weight_decay(self) -> set[str]:
        return set()

    def layer_id(self, param_name: str) -> int:
        """Stem 0, stage i -> i+1, final norm / heads -> depth+1 (for layer-wise lr decay)."""
        name = param_name.removeprefix("backbone.").removeprefix("module.")
        if name.startswith("stem"):
            return 0
        if name.startswith("stages."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1

    @property
    def num_layers(self) -> int:
        return self.depth + 1
