"""3D Vision Transformer for CT volumes (DINO/iBOT/MAE backbone).

Input ``(B, C, X, Y, Z)`` -> non-overlapping 3D patches -> ``[CLS, registers..., patches...]`` tokens.
Position embeddings (fixed 3D sin-cos or learned) are defined on the grid of ``img_size`` and resized
trilinearly to any patch-divisible input, so 32³ local crops and 64³ global views share one model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from fmct.models.layers import Block, PatchEmbed3D, to_3tuple
from fmct.models.pos_embed import resize_pos_embed, sincos_3d

#: name -> (embed_dim, depth, num_heads)
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 6, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


@dataclass
class ViT3DConfig:
    """Architecture of :class:`ViT3D`. JSON-able via :meth:`to_dict` / :meth:`from_dict`.

    ``img_size`` / ``patch_size`` are voxels, an int (cube) or ``(x, y, z)`` (anisotropic allowed).
    """

    img_size: int | tuple[int, int, int] = 64
    patch_size: int | tuple[int, int, int] = 8
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    n_registers: int = 0
    drop_path_rate: float = 0.0
    layerscale_init: float | None = None
    pos_embed: Literal["sincos", "learned"] = "sincos"
    grad_checkpointing: bool = False
    voxel_mlp: int = (
        0  # > 0: a pointwise voxel layer with this many features before patchifying (PatchEmbed3D)
    )
    type: str = field(default="vit3d", repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.img_size, list):
            self.img_size = tuple(self.img_size)  # type: ignore[assignment]
        if isinstance(self.patch_size, list):
            self.patch_size = tuple(self.patch_size)  # type: ignore[assignment]
        if self.pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {self.pos_embed!r}")
        if self.type != "vit3d":
            raise ValueError(f"ViT3DConfig.type must be 'vit3d', got {self.type!r}")
        img, patch = to_3tuple(self.img_size), to_3tuple(self.patch_size)
        if any(i % p for i, p in zip(img, patch, strict=True)):
            raise ValueError(f"img_size {img} is not divisible by patch_size {patch}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists), including ``"type": "vit3d"``."""
        d = dataclasses.asdict(self)
        for k in ("img_size", "patch_size"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViT3DConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ViT3DConfig keys: {unknown}")
        return cls(**d)

    #: Fields a pretraining config's ``model`` section does not hold: they come from the data
    #: (``data.global_size``, the number of windows).
    DATA_FIELDS = ("img_size", "in_chans")

    @classmethod
    def section_defaults(cls) -> dict[str, Any]:
        """The defaults of a pretraining config's ``model`` section: ``type`` and every architecture field
        but :attr:`DATA_FIELDS` (the one place these defaults are written is this class)."""
        skip = (*cls.DATA_FIELDS, "type")
        return {"type": "vit3d", **{f.name: f.default for f in dataclasses.fields(cls) if f.name not in skip}}

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any], img_size: int, in_chans: int | None = None
    ) -> ViT3DConfig:
        """The architecture a ``model`` section describes, for inputs of ``img_size`` voxels (and ``in_chans``
        channels when given); null values take the field's default. Raises ``ValueError`` naming the key."""
        kw = {k: v for k, v in section.items() if v is not None}
        kw["img_size"] = img_size
        if in_chans is not None:
            kw["in_chans"] = in_chans
        try:
            return cls(**kw)
        except TypeError:
            names = {f.name for f in dataclasses.fields(cls)}
            raise ValueError(f"unknown ViT3DConfig keys: {sorted(set(kw) - names)}") from None


def vit3d_from_preset(name: str, **overrides: Any) -> ViT3D:
    """Build a :class:`ViT3D` from a preset name (tiny/small/base/large) plus config overrides."""
    return ViT3D(vit3d_config_from_preset(name, **overrides))


def vit3d_config_from_preset(name: str, **overrides: Any) -> ViT3DConfig:
    """The :class:`ViT3DConfig` of a preset with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown ViT preset {name!r}; choose one of {sorted(PRESETS)}")
    dim, depth, heads = PRESETS[name]
    kw: dict[str, Any] = {"embed_dim": dim, "depth": depth, "num_heads": heads}
    kw.update(overrides)
    return ViT3DConfig(**kw)


class ViT3D(nn.Module):
    """3D ViT backbone.

    Attributes:
        embed_dim: token dim D.  num_prefix: 1 + n_registers tokens before the patch tokens.
        patch_size / base_grid: 3-tuples (voxels / patches at ``img_size``).
    """

    def __init__(self, cfg: ViT3DConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if cfg is None:
            cfg = ViT3DConfig(**kwargs)
        elif kwargs:
            cfg = dataclasses.replace(cfg, **kwargs)
        self.config = cfg
        self.embed_dim = cfg.embed_dim
        self.depth = cfg.depth
        self.num_heads = cfg.num_heads
        self.n_registers = cfg.n_registers
        self.num_prefix = 1 + cfg.n_registers
        self.patch_size = to_3tuple(cfg.patch_size)
        img = to_3tuple(cfg.img_size)
        self.base_grid: tuple[int, int, int] = tuple(
            i // p for i, p in zip(img, self.patch_size, strict=True)
        )
        self.grad_checkpointing = cfg.grad_checkpointing
        d = cfg.embed_dim

        self.patch_embed = PatchEmbed3D(self.patch_size, cfg.in_chans, d, cfg.voxel_mlp)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.n_registers, d)) if cfg.n_registers else None
        n_base = math.prod(self.base_grid)
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n_base, d))
        else:
            self.register_buffer("pos_embed", sincos_3d(d, self.base_grid)[None], persistent=False)
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, dpr[i], cfg.layerscale_init)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self._init_weights()

    # ------------------------------------------------------------------ init / optimiser helpers
    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.register_tokens is not None:
            nn.init.trunc_normal_(self.register_tokens, std=0.02)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # patch embedding as a linear map of the flattened patch
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.proj.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not get weight decay (tokens and position table)."""
        names = {"cls_token", "mask_token", "register_tokens", "pos_embed"}
        return {n for n, _ in self.named_parameters() if n in names}

    def layer_id(self, param_name: str) -> int:
        """Layer index for layer-wise lr decay: embeddings/tokens 0, ``blocks.i`` i+1, rest depth+1."""
        name = param_name.removeprefix("backbone.").removeprefix("module.")
        if name.startswith(("patch_embed", "cls_token", "mask_token", "register_tokens", "pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1

    @property
    def num_layers(self) -> int:
        """Number of layer ids used by :meth:`layer_id` minus one (``depth + 1``)."""
        return self.depth + 1

    # ------------------------------------------------------------------ geometry
    def grid_size(self, input_shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int]:
        """Patch grid for an input of spatial shape ``(..., X, Y, Z)``; raises if not patch-divisible."""
        spatial = tuple(int(s) for s in input_shape[-3:])
        if len(spatial) != 3 or any(s % p for s, p in zip(spatial, self.patch_size, strict=True)):
            raise ValueError(
                f"input spatial shape {spatial} is not divisible by patch size {self.patch_size}"
            )
        return tuple(s // p for s, p in zip(spatial, self.patch_size, strict=True))  # type: ignore[return-value]

    def num_patches(self, input_shape: tuple[int, ...] | torch.Size) -> int:
        """Number of patch tokens N for an input of spatial shape ``(..., X, Y, Z)``."""
        return math.prod(self.grid_size(input_shape))

    def pos_embed_for(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """Patch position embeddings ``(1, prod(grid), D)`` resized from the base grid."""
        return resize_pos_embed(self.pos_embed, self.base_grid, grid)

    # ------------------------------------------------------------------ forward
    def prepare_tokens(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, keep_indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, C, X, Y, Z)`` -> tokens ``(B, 1 + R + N', D)`` before the blocks.

        ``mask`` (B, N) bool: True patches are replaced by the mask token before adding position.
        ``keep_indices`` (B, N') long: keep only these patch tokens (MAE encoder), after position.
        """
        if x.ndim != 5:
            raise ValueError(f"expected input (B, C, X, Y, Z), got shape {tuple(x.shape)}")
        grid = self.grid_size(x.shape)
        t = self.patch_embed(x)  # (B, N, D)
        b, n, d = t.shape
        if mask is not None:
            if mask.shape != (b, n):
                raise ValueError(f"mask must be (B, N) = {(b, n)}, got {tuple(mask.shape)}")
            t = torch.where(mask[..., None].bool(), self.mask_token.to(t.dtype).expand(b, n, d), t)
        t = t + self.pos_embed_for(grid).to(t.dtype)
        if keep_indices is not None:
            t = torch.gather(t, 1, keep_indices[..., None].expand(-1, -1, d))
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.register_tokens is not None:
            prefix.append(self.register_tokens.expand(b, -1, -1))
        return torch.cat([*prefix, t], dim=1)

    def forward_features(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
        keep_indices: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Run the backbone.

        Args:
            x: ``(B, C, X, Y, Z)`` with X, Y, Z divisible by the patch size.
            mask: optional ``(B, N)`` bool, True = masked patch (iBOT).
            return_attention: also return explicit attention maps per block.
            keep_indices: optional ``(B, N')`` indices of patch tokens to keep (MAE encoder).

        Returns:
            ``{"cls": (B, D), "patch": (B, N, D), "registers": (B, R, D)}`` after the final LayerNorm,
            plus ``"attn": list[(B, H, T, T)]`` (T = 1 + R + N) when ``return_attention``.
        """
        t = self.prepare_tokens(x, mask, keep_indices)
        attns: list[torch.Tensor] = []
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled() and not return_attention
        for blk in self.blocks:
            if use_ckpt:
                t, _ = checkpoint(blk, t, use_reentrant=False)
            else:
                t, a = blk(t, return_attention)
                if a is not None:
                    attns.append(a)
        t = self.norm(t)
        out: dict[str, Any] = {
            "cls": t[:, 0],
            "registers": t[:, 1 : self.num_prefix],
            "patch": t[:, self.num_prefix :],
        }
        if return_attention:
            out["attn"] = attns
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, X, Y, Z) -> (B, D)`` CLS embedding."""
        return self.forward_features(x)["cls"]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Toggle activation checkpointing of the blocks."""
        self.grad_checkpointing = enable
