"""The numpy 1D interpolation kernel and the axis-aligned resize of ``fmct.preprocess.interp`` / ``geometry``
before the second ingest speed pass of issue 27 (weights once per pass, int16 clipped in its own dtype,
contiguous row gathers, only the rows the next pass reads, z upsampled a plane at a time), kept verbatim as
the reference the faster ones are tested against (bit-identical). Not used by fmct itself."""

from __future__ import annotations

import numpy as np

_SLAB_BUDGET = 250_000


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
    lead = (slice(None),) * axis  # fancy indexing, not np.take: take copies a non-contiguous source whole
    out = _clipped(src[lead + (i0,)], clip)
    out *= w0.astype(np.float32).reshape(shape)
    x1 = _clipped(src[lead + (i1,)], clip)
    x1 *= w1.astype(np.float32).reshape(shape)
    out += x1
    if mode == "air" and w_out.any():
        out += (w_out * fill).astype(np.float32).reshape(shape)
    return out


def _memory_order(arr: np.ndarray) -> list[int]:
    """Logical axes of ``arr`` from the slowest-varying in memory to the fastest."""
    return [int(a) for a in np.argsort([-abs(st) for st in arr.strides], kind="stable")]


def _resize_separable(
    src: np.ndarray, out_shape: list[int], scales: tuple[float, ...], clip: tuple[float, float] | None
) -> np.ndarray:
    """Trilinear resize (``F.interpolate(align_corners=False)`` with explicit scales, edges clamped) as
    three 1D passes in memory order, the first two in slabs of the slowest axis. ``(X', Y', Z')`` float32."""
    mem = _memory_order(src)
    a = src.transpose(mem)
    coords = [(np.arange(out_shape[ax]) + 0.5) / scales[ax] - 0.5 for ax in mem]
    same = [out_shape[ax] == src.shape[ax] and abs(scales[ax] - 1.0) < 1e-12 for ax in mem]
    buf = np.empty((a.shape[0], out_shape[mem[1]], out_shape[mem[2]]), dtype=np.float32)
    slab = max(1, _SLAB_BUDGET // max(a.shape[1] * a.shape[2], 1))
    for z0 in range(0, a.shape[0], slab):
        part, clipped = a[z0 : z0 + slab], False
        for k in (2, 1):
            if not same[k]:
                part = interp_axis(part, k, coords[k], "clamp", clip=None if clipped else clip)
                clipped = True
        if not clipped:
            part = np.clip(part, *clip) if clip is not None else part
        buf[z0 : z0 + slab] = part
    if same[0]:
        res = buf
    else:  # the slowest axis last, in chunks of the middle one (bounded temporaries)
        res = np.empty((out_shape[mem[0]],) + buf.shape[1:], dtype=np.float32)
        rows = max(1, _SLAB_BUDGET // max(res.shape[0] * res.shape[2], 1))
        for y0 in range(0, buf.shape[1], rows):
            res[:, y0 : y0 + rows] = interp_axis(buf[:, y0 : y0 + rows], 0, coords[0], "clamp")
    return res.transpose(np.argsort(mem))
