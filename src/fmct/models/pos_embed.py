"""3D position embeddings: fixed sin-cos tables and trilinear resizing to another patch grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """``(N,)`` positions -> ``(N, dim)`` as ``[sin(pos*w), cos(pos*w)]``; ``dim`` must be even."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / max(dim / 2.0, 1.0)
    omega = 1.0 / (10000.0**omega)
    out = pos.double()[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_3d(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3D sin-cos embedding ``(prod(grid), dim)`` float32, tokens in C order over (x, y, z).

    Each axis gets ``2 * (dim // 6)`` channels (sin and cos halves); leftover channels are zero.
    """
    per_axis = 2 * (dim // 6)
    if per_axis == 0:
        raise ValueError(f"embed_dim {dim} too small for a 3D sin-cos embedding (needs >= 6)")
    gx, gy, gz = torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij")
    parts = [_sincos_1d(per_axis, g.reshape(-1)) for g in (gx, gy, gz)]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], dim - emb.shape[1])], dim=1)
    return emb.float()


def resize_pos_embed(
    pos: torch.Tensor, src_grid: tuple[int, int, int], dst_grid: tuple[int, int, int]
) -> torch.Tensor:
    """Trilinearly resize a patch position table ``(1, prod(src_grid), D) -> (1, prod(dst_grid), D)``."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos
    d = pos.shape[-1]
    vol = pos.reshape(1, *src_grid, d).permute(0, 4, 1, 2, 3)
    vol = F.interpolate(vol, size=tuple(dst_grid), mode="trilinear", align_corners=False)
    return vol.permute(0, 2, 3, 4, 1).reshape(1, -1, d)
