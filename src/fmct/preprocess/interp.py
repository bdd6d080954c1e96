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

import functools
from dataclasses import dataclass

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


@dataclass(frozen=True)
class AxisWeights:
    """One axis' interpolation weights (:func:`axis_weights`), computed once for all slabs of a pass.

    Output value ``m`` is ``src[i0[m]] * w0[m] + src[i1[m]] * w1[m] (+ fill * w_out[m])`` along an axis of
    ``n`` source voxels; ``w0``, ``w1`` float32 (the weights the kernels multiply by), ``w_out`` float64.
    """

    n: int
    mode: str
    i0: np.ndarray
    i1: np.ndarray
    w0: np.ndarray
    w1: np.ndarray
    w_out: np.ndarray

    def read(self) -> np.ndarray:
        """The source indices these weights read, sorted."""
        return np.union1d(self.i0, self.i1)

    def renumbered(self, kept: np.ndarray) -> AxisWeights:
        """The same weights over ``src[kept]`` (``kept``: sorted source indices, :meth:`read` among them)."""
        i0, i1 = np.searchsorted(kept, self.i0), np.searchsorted(kept, self.i1)
        if not (np.array_equal(kept[i0], self.i0) and np.array_equal(kept[i1], self.i1)):
            raise ValueError("kept must hold every source index the weights read")
        return AxisWeights(len(kept), self.mode, i0, i1, self.w0, self.w1, self.w_out)


def axis_weights(coords: np.ndarray, n: int, mode: str = "clamp") -> AxisWeights:
    """:class:`AxisWeights` for source coordinates ``coords`` ``(M,)`` (index units) on an axis of ``n``."""
    i0, i1, w0, w1, w_out = _weights_1d(coords, n, mode)
    return AxisWeights(n, mode, i0, i1, w0.astype(np.float32), w1.astype(np.float32), w_out)


def _clipped(values: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    out = values.astype(np.float32, copy=values.dtype != np.float32)
    if clip is not None:
        np.clip(out, np.float32(clip[0]), np.float32(clip[1]), out=out)
    return out


@functools.lru_cache(maxsize=64)
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


def clip_exactly(values: np.ndarray, clip: tuple[float, float]) -> bool:
    """Clip ``values`` in place to what the kernels' ``clip`` gives (gathered values cast to float32, then
    clipped) when that is exact in their own dtype (float32, or :func:`_int_bounds`): clipping before a
    gather then equals clipping after it. ``False`` (``values`` untouched) otherwise."""
    bounds = _int_bounds(values.dtype, tuple(clip))
    if bounds is not None:
        np.clip(values, *bounds, out=values)
        return True
    if values.dtype == np.float32:
        np.clip(values, np.float32(clip[0]), np.float32(clip[1]), out=values)
        return True
    return False


def _weighted(
    values: np.ndarray, weight: np.ndarray, clip: tuple[float, float] | None, out: np.ndarray | None = None
) -> np.ndarray:
    """float32 ``clip(values) * weight`` (into ``out`` when given); ``values`` (gathered: a fresh array) are
    clipped in their own dtype when that is exact (:func:`_int_bounds`) and cast to float32 inside the
    multiplication."""
    bounds = _int_bounds(values.dtype, None if clip is None else tuple(clip))
    if bounds is None:
        values = _clipped(values, clip)
        return np.multiply(values, weight, out=values if out is None else out)
    np.clip(values, *bounds, out=values)
    return np.multiply(values, weight, dtype=np.float32, out=out)


def interp_axis(
    src: np.ndarray,
    axis: int,
    coords: np.ndarray | AxisWeights,
    mode: str = "clamp",
    fill: float = 0.0,
    clip: tuple[float, float] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Linear interpolation of ``src`` along ``axis`` at ``coords`` ``(M,)`` (source index units).

    Args:
        src: any shape and numeric dtype; values are clipped to ``clip`` (after the gather) when given.
        coords: the coordinates, or their :func:`axis_weights` (for this axis' length and ``mode``).
        mode: ``"clamp"`` or ``"air"`` (see module doc); ``fill`` is the value outside for ``"air"``.
        out: optional float32 array of the result's shape to write into.

    Returns:
        float32 array of ``src.shape`` with ``axis`` replaced by ``M`` (C order, or ``out``).
    """
    w = coords if isinstance(coords, AxisWeights) else axis_weights(coords, src.shape[axis], mode)
    if w.n != src.shape[axis] or w.mode != mode:
        raise ValueError(f"weights for {w.n} voxels ({w.mode}) used on {src.shape[axis]} ({mode})")
    shape = [1] * src.ndim
    shape[axis] = len(w.i0)
    if axis == src.ndim - 1 and abs(src.strides[-1]) == src.itemsize and not src.flags.c_contiguous:
        src = np.ascontiguousarray(src)  # rows of a larger array: gathering within rows is ~1.5x faster
    lead = (slice(None),) * axis  # fancy indexing, not np.take: take copies a non-contiguous source whole
    out = _weighted(src[lead + (w.i0,)], w.w0.reshape(shape), clip, out)
    out += _weighted(src[lead + (w.i1,)], w.w1.reshape(shape), clip)
    if mode == "air" and w.w_out.any():
        out += (w.w_out * fill).astype(np.float32).reshape(shape)
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
    w = axis_weights(coords, src.shape[0], "clamp")
    out = np.empty((len(w.i0),) + src.shape[1:], np.float32)
    tmp = np.empty(src.shape[1:], np.float32)
    for i, (a, b) in enumerate(zip(w.i0.tolist(), w.i1.tolist(), strict=True)):
        np.multiply(src[a], w.w0[i], out=out[i])
        np.multiply(src[b], w.w1[i], out=tmp)
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
