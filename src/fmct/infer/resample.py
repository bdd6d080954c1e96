"""Put a map defined on the model cube back onto any scan grid (the original source, or the
preprocessed volume), through world coordinates.

For each target voxel ``v``: world ``w = target_affine @ v``; cube index ``c = inv(grid_affine) @ w``;
the value is the trilinear interpolation of the cube map at ``c`` (``torch.nn.functional.grid_sample``,
``align_corners=True`` so index ``0`` and ``S-1`` are the first and last voxel centres); outside the
cube -> ``fill``. Processed in slabs along the first target axis to bound memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def resample_to_grid(
    cube_map: torch.Tensor | np.ndarray,
    grid_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Sequence[int],
    fill: float = 0.0,
    max_points: int = 4_000_000,
) -> np.ndarray:
    """Resample ``cube_map`` ``(S1, S2, S3)`` (cube voxel -> world via ``grid_affine`` (4, 4)) onto the
    grid ``target_shape`` ``(X, Y, Z)`` whose voxel -> world affine is ``target_affine`` (4, 4).

    Returns:
        ``(X, Y, Z)`` float32 array.
    """
    src = torch.as_tensor(np.asarray(cube_map, dtype=np.float32))
    if src.ndim != 3:
        raise ValueError(f"cube_map must be 3D, got shape {tuple(src.shape)}")
    tx, ty, tz = (int(s) for s in target_shape)
    vox2cube = np.linalg.inv(np.asarray(grid_affine, dtype=np.float64)) @ np.asarray(
        target_affine, np.float64
    )
    # target voxel -> normalised grid_sample coordinate, rows reordered to (z, y, x) ~ (W, H, D)
    sizes = np.asarray(src.shape, dtype=np.float64)
    to_norm = np.diag([*(2.0 / np.maximum(sizes - 1, 1)), 1.0])
    to_norm[:3, 3] = -1.0
    full = (to_norm @ vox2cube)[[2, 1, 0]]
    m = torch.as_tensor(full[:, :3], dtype=torch.float32)
    t = torch.as_tensor(full[:, 3], dtype=torch.float32)
    jj = torch.arange(ty, dtype=torch.float32)[:, None, None] * m[:, 1]
    kk = torch.arange(tz, dtype=torch.float32)[None, :, None] * m[:, 2]
    base = jj + kk + t  # (Y, Z, 3): contribution of the (j, k) indices, shared by every slab
    out = np.empty((tx, ty, tz), dtype=np.float32)
    slab = max(1, max_points // max(1, ty * tz))
    inp = src[None, None]
    ones = torch.ones_like(inp) if fill != 0.0 else None
    for i0 in range(0, tx, slab):
        ii = torch.arange(i0, min(tx, i0 + slab), dtype=torch.float32)
        grid = (ii[:, None, None, None] * m[:, 0] + base[None])[None]  # (1, n, Y, Z, 3)
        vals = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        if ones is not None:
            inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            vals = vals + fill * (1.0 - inside)
        out[i0 : i0 + len(ii)] = vals[0, 0].numpy()
    return out


def plane_affine(affine: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Affine of the one-voxel-thick plane ``index`` along ``axis`` of a grid with ``affine``."""
    shift = np.eye(4)
    shift[axis, 3] = index
    return np.asarray(affine, dtype=np.float64) @ shift


def resample_planes(
    cube_map: torch.Tensor | np.ndarray,
    grid_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Sequence[int],
    index: Sequence[int],
) -> list[np.ndarray]:
    """The three orthogonal planes through voxel ``index`` of the target grid, without resampling the
    whole volume: ``[(X, Y) at z=k, (X, Z) at y=j, (Y, Z) at x=i]``."""
    i, j, k = (int(v) for v in index)
    x, y, z = (int(v) for v in target_shape)
    axial = resample_to_grid(cube_map, grid_affine, plane_affine(target_affine, 2, k), (x, y, 1))[:, :, 0]
    coronal = resample_to_grid(cube_map, grid_affine, plane_affine(target_affine, 1, j), (x, 1, z))[:, 0, :]
    sagittal = resample_to_grid(cube_map, grid_affine, plane_affine(target_affine, 0, i), (1, y, z))[0]
    return [axial, coronal, sagittal]
