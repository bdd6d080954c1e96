"""The torch implementation of ``fmct.preprocess.geometry`` before the ingest speed work (issue 27), kept
verbatim as the reference the faster numpy kernels are tested against (same grids, same values to a stated
HU tolerance). Not used by fmct itself.

Geometry: reorient to RAS and resample to isotropic spacing in one pass, with torch in float32.

Two paths, both exact in world coordinates (the output affine maps every output voxel to the world
point it was sampled from):

* **axis-aligned** (the usual case: the direction matrix is a signed permutation, up to a residual that
  moves no voxel by more than ``0.1 * spacing``): trilinear ``F.interpolate`` along the source axes,
  then a permute/flip of the (smaller) result into RAS order. Output voxel ``i`` along an axis of
  source spacing ``s0`` samples source index ``(i + 0.5) * s / s0 - 0.5`` (voxel boxes aligned at
  the start of the field of view, the physical extent is kept).
* **oblique** (gantry tilt, sheared or rotated affines): ``F.grid_sample`` through the full affine onto
  an RAS-aligned grid covering the world bounding box of the source voxel centres, in slabs to bound
  memory; points outside the source read as air.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fmct.io.volume import Volume
from fmct.preprocess.geometry import (  # unchanged by the speed work: shared, not copied
    AxisMap,
    _corner_indices,
    is_axis_aligned,
    ras_order_matrix,
    snapped_affine,
)

AIR_HU = -1000.0
#: Output voxels computed per ``grid_sample`` call on the oblique path (bounds the memory of the grid).
_SLAB_VOXELS = 4_000_000


def _resample_aligned(
    data: torch.Tensor, affine: np.ndarray, axes: AxisMap, spacing: float
) -> tuple[torch.Tensor, np.ndarray]:
    """Trilinear resize along source axes, then permute/flip into RAS. Returns ``(array, affine)``."""
    src_spacing = np.linalg.norm(affine[:3, :3], axis=0)
    scales = tuple(float(s0 / spacing) for s0 in src_spacing)
    # index map out -> src for F.interpolate(align_corners=False, explicit scale factors)
    to_src = np.eye(4)
    if all(abs(sc - 1.0) < 1e-9 for sc in scales):
        res = data.clone()  # never write into the caller's array later
    else:
        # interpolate in memory order (DICOM readers hand out transposed (Z, Y, X) buffers), no copy
        order = [int(a) for a in np.argsort([-st for st in data.stride()], kind="stable")]
        res = F.interpolate(
            data.permute(*order)[None, None],
            scale_factor=[scales[a] for a in order],
            mode="trilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )[0, 0].permute(*[int(a) for a in np.argsort(order)])
        for a, sc in enumerate(scales):
            to_src[a, a] = 1.0 / sc
            to_src[a, 3] = 0.5 / sc - 0.5
    aff = snapped_affine(affine, axes) @ to_src
    # permute source axes into RAS order, then flip the reversed ones
    res = res.permute(*axes.perm)
    flips = [k for k in range(3) if axes.flip[k]]
    if flips:
        res = torch.flip(res, flips)
    return res.contiguous(), aff @ ras_order_matrix(axes, tuple(res.shape))


def _resample_oblique(
    data: torch.Tensor, affine: np.ndarray, spacing: float, world_box: tuple | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Sample the source through its full affine onto an RAS grid covering its world bounding box
    (intersected with ``world_box = (lo, hi)`` in RAS mm when given)."""
    affine = np.asarray(affine, dtype=np.float64)
    world = (_corner_indices(tuple(data.shape)) @ affine.T)[:, :3]
    lo, hi = world.min(0), world.max(0)
    if world_box is not None:
        lo, hi = np.maximum(lo, world_box[0]), np.minimum(hi, world_box[1])
        hi = np.maximum(hi, lo)
    out_shape = [int(np.floor((h - low) / spacing + 1e-6)) + 1 for low, h in zip(lo, hi, strict=True)]
    out_aff = np.diag([spacing, spacing, spacing, 1.0])
    out_aff[:3, 3] = lo
    # out index -> src index, then to grid_sample's normalised coordinates (align_corners=True)
    m = np.linalg.inv(affine) @ out_aff
    denom = np.array([max(n - 1, 1) for n in data.shape], dtype=np.float64)
    norm_m = np.diag([*(2.0 / denom), 1.0])
    norm_m[:3, 3] = -1.0
    # rows reversed: grid_sample wants (W, H, D) = (z, y, x) source coordinates in the last dim
    m = torch.from_numpy((norm_m @ m)[[2, 1, 0]]).float()
    shifted = (data - AIR_HU)[None, None]  # zero padding outside the source == air
    out = torch.empty(out_shape, dtype=torch.float32)
    ny, nz = out_shape[1], out_shape[2]
    step = max(1, _SLAB_VOXELS // max(ny * nz, 1))
    cj = torch.arange(ny, dtype=torch.float32)[None, :, None, None] * m[:3, 1]  # (1, ny, 1, 3)
    ck = torch.arange(nz, dtype=torch.float32)[None, None, :, None] * m[:3, 2] + m[:3, 3]  # (1, 1, nz, 3)
    cjk = cj + ck  # (1, ny, nz, 3)
    for x0 in range(0, out_shape[0], step):
        ii = torch.arange(x0, min(x0 + step, out_shape[0]), dtype=torch.float32)
        grid = ii[:, None, None, None] * m[:3, 0] + cjk  # (n, ny, nz, 3) normalised source coords
        out[x0 : x0 + len(ii)] = F.grid_sample(
            shifted, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True
        )[0, 0]
    out += AIR_HU
    return out, out_aff


def to_ras_isotropic(
    volume: Volume, spacing: float = 1.0, world_box: tuple | None = None
) -> tuple[Volume, str]:
    """Reorient to RAS and resample to ``spacing`` mm isotropic (trilinear, float32).

    Args:
        volume: any orientation; ``array (X, Y, Z)`` of HU (any dtype), ``affine`` voxel -> RAS mm.
        spacing: output voxel size in mm.
        world_box: optional ``(lo, hi)`` RAS mm corners limiting the output grid (used on the oblique path
            only, where the grid otherwise covers the whole tilted box).

    Returns:
        ``(volume, path)``: float32 ``(X', Y', Z')`` volume whose affine is ``diag(spacing)`` plus an
        origin, and ``"axis-aligned"`` or ``"oblique"`` naming the path taken.
    """
    arr = np.asarray(volume.array)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)  # keeps the memory layout
    if any(st < 0 for st in arr.strides):
        arr = np.ascontiguousarray(arr)
    data = torch.from_numpy(arr)
    axes = is_axis_aligned(volume.affine, volume.shape, tol_mm=0.1 * spacing)
    if axes is not None:
        out, aff = _resample_aligned(data, volume.affine, axes, spacing)
        path = "axis-aligned"
    else:
        out, aff = _resample_oblique(data, volume.affine, spacing, world_box)
        path = "oblique"
    return Volume(out.numpy(), aff, dict(volume.meta)), path
