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

#: Output voxels per chunk of the 2D (bilinear) pass: bounds the temporaries to ~4 MB each.
_CHUNK_VOXELS = 1_000_000


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
    out = _clipped(np.take(src, i0, axis=axis), clip)
    out *= w0.astype(np.float32).reshape(shape)
    x1 = _clipped(np.take(src, i1, axis=axis), clip)
    x1 *= w1.astype(np.float32).reshape(shape)
    out += x1
    if mode == "air" and w_out.any():
        out += (w_out * fill).astype(np.float32).reshape(shape)
    return out


def interp_plane(
    rows: np.ndarray, n0: int, n1: int, c0: np.ndarray, c1: np.ndarray, fill: float
) -> np.ndarray:
    """Bilinear interpolation over a 2D grid of rows, outside reading as ``fill``.

    Args:
        rows: ``(n0 * n1, L)`` float32, row ``p * n1 + q`` holding the source at plane index ``(p, q)``.
        c0, c1: ``(P,)`` source plane coordinates (index units along the ``n0`` and ``n1`` axes).

    Returns:
        ``(P, L)`` float32.
    """
    out = np.empty((len(c0), rows.shape[1]), dtype=np.float32)
    step = max(1, _CHUNK_VOXELS // max(rows.shape[1], 1))
    tmp = np.empty((min(step, len(c0)), rows.shape[1]), dtype=np.float32)
    for s in range(0, len(c0), step):
        e = min(s + step, len(c0))
        a0, b0, wa0, wb0, _ = _weights_1d(c0[s:e], n0, "air")
        a1, b1, wa1, wb1, _ = _weights_1d(c1[s:e], n1, "air")
        acc, t = out[s:e], tmp[: e - s]
        acc.fill(0.0)
        inside = np.zeros(e - s)
        for i, wi in ((a0, wa0), (b0, wb0)):
            for j, wj in ((a1, wa1), (b1, wb1)):
                w = wi * wj
                inside += w
                np.take(rows, i * n1 + j, axis=0, out=t)
                t *= w.astype(np.float32)[:, None]
                acc += t
        acc += ((1.0 - inside) * fill).astype(np.float32)[:, None]
    return out
