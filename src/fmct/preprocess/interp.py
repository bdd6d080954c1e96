"""Linear interpolation kernels (numpy, float32) behind :mod:`fmct.preprocess.geometry`.

Trilinear interpolation is separable: along an axis that maps to one output axis alone, a 1D pass
(two gathers and a weighted sum) does that axis' share of the work. The kernels gather from the source
in whatever dtype it has (int16 from the DICOM reader: no float copy of the whole scan), clip the gathered
values to a HU range and compute in float32.

Outside the source, two conventions (both those of the torch code this replaced):

* ``"clamp"``: coordinates are clamped to ``[0, n - 1]`` (edge voxels repeat; ``F.interpolate``).
* ``"air"``: a neighbour outside the source reads as ``fill`` (air), so edge voxels blend towards air
  (``F.grid_sample`` with zero padding around air-shifted data).
"""

from __future__ import annotations

import numpy as np

#: Output values per block of :func:`interp_plane` (its temporaries stay in the CPU cache).
_BLOCK = 65_536


def _weights_1d(coords: np.ndarray, n: int, mode: str) -> tuple[np.ndarray, ...]:
    """``(i0, i1, w0, w1, w_out)`` for source coordinates ``coords`` (index units) on an axis of ``n``.

    Each output value is ``src[i0] * w0 + src[i1] * w1 + fill * w_out``; indices are always valid.
    """
    c = np.asarray(coords, dtype=np.float64)
    if mode == "clamp":
        c = np.clip(c, 0.0, max(n - 1, 0))
    f = np.floor(c)
    w1 = c - f
    i0 = f.astype(np.int64)
    i1 = i0 + 1
    w0 = 1.0 - w1
    if mode == "clamp":
        i1 = np.minimum(i1, n - 1)
        return i0, i1, w0, w1, np.zeros_like(w0)
    ok0 = (i0 >= 0) & (i0 < n)
    ok1 = (i1 >= 0) & (i1 < n)
    w_out = np.where(ok0, 0.0, w0) + np.where(ok1, 0.0, w1)
    return np.where(ok0, i0, 0), np.where(ok1, i1, 0), np.where(ok0, w0, 0.0), np.where(ok1, w1, 0.0), w_out


def _clipped(values: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    out = values.astype(np.float32, copy=values.dtype != np.float32)
    if clip is not None:
        np.clip(out, np.float32(clip[0]), np.float32(clip[1]), out=out)
    return out


def _int_bounds(dtype: np.dtype, clip: tuple[float, float] | None) -> tuple[int, int] | None:
    """``clip`` as integers when clipping a small integer ``dtype`` in place gives the values of clipping its
    float32 copy (bounds whole numbers within the dtype's range; such integers are exact in float32)."""
    if clip is None or dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    lo, hi = (float(np.float32(c)) for c in clip)
    info = np.iinfo(dtype)
    if not (lo.is_integer() and hi.is_integer() and info.min <= lo <= hi <= info.max):
        return None
    return int(lo), int(hi)


def _weighted(values: np.ndarray, weight: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    """float32 ``clip(values) * weight``; ``values`` (gathered: a fresh array) are clipped in their own dtype
    when that is exact (:func:`_int_bounds`) and cast to float32 inside the multiplication."""
    bounds = _int_bounds(values.dtype, clip)
    if bounds is None:
        out = _clipped(values, clip)
        out *= weight
        return out
    np.clip(values, *bounds, out=values)
    return np.multiply(values, weight, dtype=np.float32)


def interp_axis(
    src: np.ndarray,
    axis: int,
    coords: np.ndarray,
    mode: str = "clamp",
    fill: float = 0.0,
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """Linear interpolation of ``src`` along ``axis`` at ``coords`` ``(M,)`` (source index units).

    Args:
        src: any shape and numeric dtype; values are clipped to ``clip`` (after the gather) when given.
        mode: ``"clamp"`` or ``"air"`` (see module doc); ``fill`` is the value outside for ``"air"``.

    Returns:
        float32 array of ``src.shape`` with ``axis`` replaced by ``M`` (C order).
    """
    i0, i1, w0, w1, w_out = _weights_1d(coords, src.shape[axis], mode)
    shape = [1] * src.ndim
    shape[axis] = len(i0)
    if axis == src.ndim - 1 and abs(src.strides[-1]) == src.itemsize and not src.flags.c_contiguous:
        src = np.ascontiguousarray(src)  # rows of a larger array: gathering within rows is ~1.5x faster
    lead = (slice(None),) * axis  # fancy indexing, not np.take: take copies a non-contiguous source whole
    out = _weighted(src[lead + (i0,)], w0.astype(np.float32).reshape(shape), clip)
    out += _weighted(src[lead + (i1,)], w1.astype(np.float32).reshape(shape), clip)
    if mode == "air" and w_out.any():
        out += (w_out * fill).astype(np.float32).reshape(shape)
    return out


def interp_planes(src: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``interp_axis(src, 0, coords, "clamp")`` (the same float32 values) one output plane at a time: each
    plane is two whole source planes times their weights, so the operands stay in the CPU cache (about 2x
    faster than gathering blocks of planes when upsampling thick slices).

    Args:
        src: ``(N, ...)`` float32 (C order along the trailing axes for speed).
        coords: ``(M,)`` source indices along axis 0.

    Returns:
        ``(M, ...)`` float32, C order.
    """
    i0, i1, w0, w1, _ = _weights_1d(coords, src.shape[0], "clamp")
    w0, w1 = w0.astype(np.float32), w1.astype(np.float32)
    out = np.empty((len(i0),) + src.shape[1:], np.float32)
    tmp = np.empty(src.shape[1:], np.float32)
    for i, (a, b) in enumerate(zip(i0.tolist(), i1.tolist(), strict=True)):
        np.multiply(src[a], w0[i], out=out[i])
        np.multiply(src[b], w1[i], out=tmp)
        out[i] += tmp
    return out


def plane_weights(n0: int, n1: int, c0: np.ndarray, c1: np.ndarray) -> tuple[list, np.ndarray]:
    """Bilinear weights for plane coordinates ``c0, c1`` ``(P,)`` (index units) on an ``n0 x n1`` grid of
    rows (row ``p * n1 + q`` at plane index ``(p, q)``), outside reading as a fill value.

    Returns:
        ``(corners, outside)``: four ``(row index (P,), float32 weight (P, 1))`` and the ``(P, 1)`` float32
        weight of the fill value.
    """
    a0, b0, wa0, wb0, _ = _weights_1d(c0, n0, "air")
    a1, b1, wa1, wb1, _ = _weights_1d(c1, n1, "air")
    corners, inside = [], np.zeros(len(c0))
    for i, wi in ((a0, wa0), (b0, wb0)):
        for j, wj in ((a1, wa1), (b1, wb1)):
            w = wi * wj
            inside += w
            corners.append((i * n1 + j, w.astype(np.float32)[:, None]))
    return corners, (1.0 - inside).astype(np.float32)[:, None]


def interp_plane(rows: np.ndarray, weights: tuple[list, np.ndarray], fill: float) -> np.ndarray:
    """Bilinear interpolation over a 2D grid of rows with :func:`plane_weights`, outside reading as ``fill``.

    Args:
        rows: ``(n0 * n1, L)`` float32, row ``p * n1 + q`` holding the source at plane index ``(p, q)``.

    Returns:
        ``(P, L)`` float32.
    """
    corners, outside = weights
    rows = np.ascontiguousarray(rows)  # np.take would copy a non-C-ordered source whole, at every call
    out = np.empty((len(outside), rows.shape[1]), np.float32)
    step = max(1, _BLOCK // max(rows.shape[1], 1))  # output rows per block: temporaries stay in cache
    tmp = np.empty((step, rows.shape[1]), np.float32)
    for p0 in range(0, len(outside), step):
        o, t = out[p0 : p0 + step], tmp[: min(step, len(outside) - p0)]
        np.multiply(outside[p0 : p0 + step], np.float32(fill), out=o[:, :1])
        o[:, 1:] = o[:, :1]
        for idx, w in corners:
            np.take(rows, idx[p0 : p0 + step], axis=0, out=t, mode="clip")  # valid; "raise" would buffer
            t *= w[p0 : p0 + step]
            o += t
    return out
