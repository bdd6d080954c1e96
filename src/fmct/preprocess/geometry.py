"""Geometry: reorient to RAS and resample to isotropic spacing in one pass (numpy, float32, no torch).

Two paths, both exact in world coordinates (the output affine maps every output voxel to the world
point it was sampled from):

* **axis-aligned** (the usual case: the direction matrix is a signed permutation, up to a residual that
  moves no voxel by more than ``0.1 * spacing``): trilinear resize along the source axes (edge voxels
  repeat), then a permute/flip of the (smaller) result into RAS order. Output voxel ``i`` along an axis of
  source spacing ``s0`` samples source index ``(i + 0.5) * s / s0 - 0.5`` (voxel boxes aligned at
  the start of the field of view, the physical extent is kept).
* **oblique** (gantry tilt, sheared or rotated affines): trilinear sampling through the full affine onto
  an RAS-aligned grid covering the world bounding box of the source voxel centres (intersected with the
  head's box when given); points outside the source read as air.

Both run as separable passes (:mod:`fmct.preprocess.interp`): three 1D passes when axis-aligned; under
gantry tilt (a shear within the plane of two axes, the third axis untouched) one 1D pass along the
untouched axis and one bilinear pass with a single 2D coordinate map shared by every row; a general
rotation falls back to ``scipy.ndimage.map_coordinates`` (order 1). The source may be int16 (read as is,
never copied to float32 whole); values are clipped to ``clip`` as they are gathered.
The grids and values are those of the torch implementation this replaced (``F.interpolate`` /
``F.grid_sample``), to float32 rounding (tests/preprocess/test_geometry_equivalence.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmct.io.volume import AIR_HU, Volume
from fmct.preprocess.interp import (
    axis_weights,
    clip_exactly,
    interp_axis,
    interp_plane,
    interp_planes,
    plane_weights,
)

#: Output voxels per ``map_coordinates`` call on the general oblique path (bounds the coordinate arrays).
_SLAB_VOXELS = 2_000_000
#: Floats of the 1D-pass rows held at once on the tilted path (chunks of output columns).
_ROWS_BUDGET = 4_000_000
#: Source voxels per slab of the 1D passes (temporaries stay in the CPU cache: ~2x faster than 4M).
_SLAB_BUDGET = 250_000


@dataclass(frozen=True)
class AxisMap:
    """How source array axes map onto RAS world axes.

    ``perm[k]`` is the source axis that becomes output axis ``k`` (R, A, S); ``flip[k]`` says whether it
    runs backwards along that world axis.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]


def nearest_axis_map(affine: np.ndarray) -> AxisMap | None:
    """The signed permutation closest to the affine's direction, or ``None`` if axes are ambiguous
    (two source axes closest to the same world axis, e.g. a 45 degree rotation)."""
    rot = np.asarray(affine, dtype=np.float64)[:3, :3]
    cols = rot / np.maximum(np.linalg.norm(rot, axis=0, keepdims=True), 1e-12)
    world_of_src = np.argmax(np.abs(cols), axis=0)  # world axis each source axis points along
    if len(set(world_of_src.tolist())) != 3:
        return None
    perm = [0, 0, 0]
    flip = [False, False, False]
    for src, w in enumerate(world_of_src.tolist()):
        perm[w] = src
        flip[w] = bool(cols[w, src] < 0)
    return AxisMap(tuple(perm), tuple(flip))  # type: ignore[arg-type]


def snapped_affine(affine: np.ndarray, axes: AxisMap) -> np.ndarray:
    """The affine with its direction replaced by the exact signed permutation ``axes`` (norms kept)."""
    out = np.array(affine, dtype=np.float64)
    norms = np.linalg.norm(out[:3, :3], axis=0)
    out[:3, :3] = 0.0
    for w, src in enumerate(axes.perm):
        out[w, src] = -norms[src] if axes.flip[w] else norms[src]
    return out


def ras_order_matrix(axes: AxisMap, ras_shape: tuple[int, ...]) -> np.ndarray:
    """``(4, 4)`` index map from an array put in RAS order (source axes permuted by ``axes.perm``, then the
    ``axes.flip`` axes reversed; its shape ``ras_shape``) back to the source array's indices: the source
    affine times this matrix is the RAS array's affine."""
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for k, src in enumerate(axes.perm):
        m[src, k] = 1.0
    flip_m = np.eye(4)
    for k in range(3):
        if axes.flip[k]:
            flip_m[k, k] = -1.0
            flip_m[k, 3] = ras_shape[k] - 1
    return m @ flip_m


def _corner_indices(shape: tuple[int, ...]) -> np.ndarray:
    """``(8, 4)`` homogeneous voxel indices of the corner voxel centres."""
    ranges = [(0, max(n - 1, 0)) for n in shape]
    grid = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T
    return np.c_[grid, np.ones(len(grid))]


def is_axis_aligned(affine: np.ndarray, shape: tuple[int, ...], tol_mm: float) -> AxisMap | None:
    """The axis map when snapping the direction to it moves no voxel centre by more than ``tol_mm``."""
    axes = nearest_axis_map(affine)
    if axes is None:
        return None
    corners = _corner_indices(shape)
    moved = (corners @ (np.asarray(affine) - snapped_affine(affine, axes)).T)[:, :3]
    return axes if float(np.abs(moved).max()) <= tol_mm else None


def aligned_axes(volume: Volume, spacing: float) -> AxisMap | None:
    """The axis map when :func:`to_ras_isotropic` takes the axis-aligned path for ``volume`` at ``spacing``
    mm (snapping the direction moves no voxel centre by more than ``0.1 * spacing``), else ``None``."""
    return is_axis_aligned(volume.affine, volume.shape, tol_mm=0.1 * spacing)


def memory_order(arr: np.ndarray) -> list[int]:
    """Logical axes of ``arr`` from the slowest-varying in memory to the fastest."""
    return [int(a) for a in np.argsort([-abs(st) for st in arr.strides], kind="stable")]


def _resize_separable(
    src: np.ndarray, out_shape: list[int], scales: tuple[float, ...], clip: tuple[float, float] | None
) -> np.ndarray:
    """Trilinear resize (``F.interpolate(align_corners=False)`` with explicit scales, edges clamped) as
    three 1D passes in memory order, the first two in slabs of the slowest axis. ``(X', Y', Z')`` float32."""
    mem = memory_order(src)
    a = src.transpose(mem)
    coords = [(np.arange(out_shape[ax]) + 0.5) / scales[ax] - 0.5 for ax in mem]
    same = [out_shape[ax] == src.shape[ax] and abs(scales[ax] - 1.0) < 1e-12 for ax in mem]
    weights = {k: axis_weights(coords[k], a.shape[k]) for k in (2, 1) if not same[k]}
    rows = None  # with both passes, the first computes only the rows the second reads (a copy of them)
    if len(weights) == 2 and len(read := weights[1].read()) < a.shape[1]:
        rows, weights[1] = read, weights[1].renumbered(read)
    buf = np.empty((a.shape[0], out_shape[mem[1]], out_shape[mem[2]]), dtype=np.float32)
    slab = max(1, _SLAB_BUDGET // max(a.shape[1] * a.shape[2], 1))
    for z0 in range(0, a.shape[0], slab):
        part, clipped = a[z0 : z0 + slab], False
        if rows is not None:
            part = part[:, rows]  # a copy: clipped in place at once (faster than its two gathers)
            clipped = clip is None or clip_exactly(part, clip)
        for k in (2, 1):
            if k in weights:  # the last pass writes into buf
                into = buf[z0 : z0 + slab] if k == 1 or 1 not in weights else None
                part = interp_axis(part, k, weights[k], "clamp", clip=None if clipped else clip, out=into)
                clipped = True
        if not clipped:
            buf[z0 : z0 + slab] = np.clip(part, *clip) if clip is not None else part
    if same[0]:
        res = buf
    else:  # the slowest axis last, one output plane at a time
        res = interp_planes(buf, coords[0])
    return res.transpose(np.argsort(mem))


def _resample_aligned(
    src: np.ndarray, affine: np.ndarray, axes: AxisMap, spacing: float, clip: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear resize along source axes, then permute/flip into RAS. Returns ``(array, affine)``."""
    src_spacing = np.linalg.norm(affine[:3, :3], axis=0)
    scales = tuple(float(s0 / spacing) for s0 in src_spacing)
    to_src = np.eye(4)  # out index -> src index
    if all(abs(sc - 1.0) < 1e-9 for sc in scales):
        res = np.array(src, dtype=np.float32)  # never write into the caller's array later
        if clip is not None:
            np.clip(res, *clip, out=res)
    else:
        out_shape = [int(np.floor(float(n) * sc)) for n, sc in zip(src.shape, scales, strict=True)]
        res = _resize_separable(src, out_shape, scales, clip)
        for a, sc in enumerate(scales):
            to_src[a, a] = 1.0 / sc
            to_src[a, 3] = 0.5 / sc - 0.5
    aff = snapped_affine(affine, axes) @ to_src
    # permute source axes into RAS order, then flip the reversed ones
    res = res.transpose(axes.perm)
    flips = [k for k in range(3) if axes.flip[k]]
    if flips:
        res = res[tuple(slice(None, None, -1) if k in flips else slice(None) for k in range(3))]
    return res, aff @ ras_order_matrix(
        axes, res.shape
    )  # a transposed/flipped view: the head crop (or the int16 cast) copies it in C order


def _oblique_grid(shape: tuple[int, ...], affine: np.ndarray, spacing: float, world_box) -> tuple:
    """``(out_shape, out_affine)``: the RAS grid over the world box of the source voxel centres."""
    world = (_corner_indices(shape) @ affine.T)[:, :3]
    lo, hi = world.min(0), world.max(0)
    if world_box is not None:
        lo, hi = np.maximum(lo, world_box[0]), np.minimum(hi, world_box[1])
        hi = np.maximum(hi, lo)
    out_shape = [int(np.floor((h - low) / spacing + 1e-6)) + 1 for low, h in zip(lo, hi, strict=True)]
    out_aff = np.diag([spacing, spacing, spacing, 1.0])
    out_aff[:3, 3] = lo
    return out_shape, out_aff


def _decoupled_axis(m: np.ndarray, out_shape: list[int]) -> tuple[int, int] | None:
    """``(src axis s, out axis a)`` such that source index ``s`` depends on output index ``a`` only and
    ``a`` moves no other source index (to 1e-4 voxel over the grid), e.g. left-right under gantry tilt."""
    for s in range(3):
        for a in range(3):
            if abs(m[s, a]) < 1e-12:
                continue
            others_out = [b for b in range(3) if b != a]
            others_src = [r for r in range(3) if r != s]
            if all(abs(m[s, b]) * out_shape[b] < 1e-4 for b in others_out) and all(
                abs(m[r, a]) * out_shape[a] < 1e-4 for r in others_src
            ):
                return s, a
    return None


def _sample_decoupled(
    src: np.ndarray, m: np.ndarray, out_shape: list[int], s: int, a: int, clip
) -> np.ndarray:
    """Trilinear sampling (outside = air) as a 1D pass along source axis ``s`` and a bilinear pass over
    the other two with one coordinate map shared by all rows. ``m`` maps output index -> source index."""
    r1, r2 = sorted((r for r in range(3) if r != s), key=lambda r: -abs(src.strides[r]))
    b1, b2 = (b for b in range(3) if b != a)
    view = src.transpose(r1, r2, s)
    i, j = np.meshgrid(np.arange(out_shape[b1]), np.arange(out_shape[b2]), indexing="ij")
    i, j = i.ravel().astype(np.float64), j.ravel().astype(np.float64)
    c1 = m[r1, b1] * i + m[r1, b2] * j + m[r1, 3]
    c2 = m[r2, b1] * i + m[r2, b2] * j + m[r2, 3]
    weights = plane_weights(view.shape[0], view.shape[1], c1, c2)  # shared by every column chunk
    out = np.empty((out_shape[b1], out_shape[b2], out_shape[a]), dtype=np.float32)  # axes (b1, b2, a)
    n_rows = view.shape[0] * view.shape[1]
    chunk = max(8, _ROWS_BUDGET // max(n_rows, 1))  # output columns along a per pass
    slab = max(1, _SLAB_BUDGET // max(view.shape[1] * view.shape[2], 1))
    # one buffer for every chunk's rows (a fresh one per chunk would briefly hold two)
    buf = np.empty(view.shape[:2] + (min(chunk, out_shape[a]),), dtype=np.float32)
    for a0 in range(0, out_shape[a], chunk):
        cols = np.arange(a0, min(a0 + chunk, out_shape[a]))
        rows = buf[:, :, : len(cols)]
        along = axis_weights(m[s, a] * cols + m[s, 3], view.shape[2], "air")
        for r0 in range(0, view.shape[0], slab):  # in slabs: the pass' temporaries stay in the CPU cache
            rows[r0 : r0 + slab] = interp_axis(view[r0 : r0 + slab], 2, along, "air", AIR_HU, clip)
        flat = interp_plane(rows.reshape(n_rows, -1), weights, AIR_HU)
        out[:, :, a0 : a0 + len(cols)] = flat.reshape(out_shape[b1], out_shape[b2], len(cols))
    return out.transpose(np.argsort([b1, b2, a]))


def _sample_general(src: np.ndarray, m: np.ndarray, out_shape: list[int], clip) -> np.ndarray:
    """Trilinear sampling (outside = air) through any affine: ``map_coordinates`` in slabs of output x."""
    from scipy.ndimage import map_coordinates

    data = np.array(src, dtype=np.float32)
    if clip is not None:
        np.clip(data, *clip, out=data)
    out = np.empty(out_shape, dtype=np.float32)
    ny, nz = out_shape[1], out_shape[2]
    jk = (
        np.stack(np.meshgrid(np.arange(ny), np.arange(nz), indexing="ij"), 0)
        .reshape(2, -1)
        .astype(np.float64)
    )
    base = m[:3, 1:3] @ jk + m[:3, 3:4]  # (3, ny * nz)
    step = max(1, _SLAB_VOXELS // max(ny * nz, 1))
    for x0 in range(0, out_shape[0], step):
        xs = np.arange(x0, min(x0 + step, out_shape[0]), dtype=np.float64)
        coords = base[:, None, :] + m[:3, 0][:, None, None] * xs[None, :, None]
        out[x0 : x0 + len(xs)] = map_coordinates(
            data, coords.reshape(3, -1), order=1, mode="grid-constant", cval=AIR_HU, prefilter=False
        ).reshape(len(xs), ny, nz)
    return out


def _resample_oblique(
    src: np.ndarray, affine: np.ndarray, spacing: float, world_box: tuple | None, clip
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the source through its full affine onto an RAS grid covering its world bounding box
    (intersected with ``world_box = (lo, hi)`` in RAS mm when given)."""
    affine = np.asarray(affine, dtype=np.float64)
    out_shape, out_aff = _oblique_grid(src.shape, affine, spacing, world_box)
    m = np.linalg.inv(affine) @ out_aff  # output index -> source index
    pair = _decoupled_axis(m, out_shape)
    if pair is not None:
        out = _sample_decoupled(src, m, out_shape, *pair, clip)
    else:
        out = _sample_general(src, m, out_shape, clip)
    return out, out_aff  # may be a transposed view: the head crop copies what it keeps


def to_ras_isotropic(
    volume: Volume,
    spacing: float = 1.0,
    world_box: tuple | None = None,
    clip: tuple[float, float] | None = None,
) -> tuple[Volume, str]:
    """Reorient to RAS and resample to ``spacing`` mm isotropic (trilinear, float32).

    Args:
        volume: any orientation; ``array (X, Y, Z)`` of HU (any dtype, any memory layout; not copied
            whole), ``affine`` voxel -> RAS mm.
        spacing: output voxel size in mm.
        world_box: optional ``(lo, hi)`` RAS mm corners limiting the output grid (used on the oblique path
            only, where the grid otherwise covers the whole tilted box).
        clip: optional ``(lo, hi)`` HU: source values are clipped to it before interpolation.

    Returns:
        ``(volume, path)``: float32 ``(X', Y', Z')`` volume (C-ordered when axis-aligned, possibly a
        transposed view when oblique) whose affine is ``diag(spacing)``
        plus an origin, and ``"axis-aligned"`` or ``"oblique"`` naming the path taken.
    """
    arr = np.asarray(volume.array)
    axes = aligned_axes(volume, spacing)
    if axes is not None:
        out, aff = _resample_aligned(arr, volume.affine, axes, spacing, clip)
        path = "axis-aligned"
    else:
        out, aff = _resample_oblique(arr, volume.affine, spacing, world_box, clip)
        path = "oblique"
    return Volume(out, aff, dict(volume.meta)), path
