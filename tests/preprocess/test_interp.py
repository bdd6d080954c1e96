"""fmct.preprocess.interp: the 1D kernel with precomputed weights, int16 clipped in its own dtype, rows made
contiguous and an output buffer, and the plane-at-a-time pass along axis 0, give bit for bit the values of
the kernel before that speed work (``reference_resample.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import reference_resample  # tests/preprocess/conftest.py puts this folder on sys.path

from fmct.preprocess.interp import axis_weights, clip_exactly, interp_axis, interp_planes

REF = reference_resample
CLIPS = [None, (-1024.0, 3071.0), (-1024.5, 3071.25), (-40000.0, 40000.0), (-100, 100)]


def _source(dtype, layout: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (info.min, info.max) if info else (-3000.0, 5000.0)
    base = rng.uniform(max(lo, -3000), min(hi, 5000), (9, 23, 31)).astype(dtype)
    if layout == "rows":  # rows of a wider array (a pre-cropped region): not contiguous
        wide = np.zeros((9, 23, 40), dtype)
        wide[:, :, 3:34] = base
        return wide[:, :, 3:34]
    if layout == "transposed":
        return np.ascontiguousarray(base.transpose(2, 1, 0)).transpose(2, 1, 0)
    return base


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "rows", "transposed"])
@pytest.mark.parametrize("mode", ["clamp", "air"])
def test_interp_axis_matches_the_reference(dtype, layout, mode):
    src = _source(dtype, layout)
    for axis in range(3):
        n = src.shape[axis]
        for coords in (np.linspace(-1.7, n + 0.6, 2 * n + 3), (np.arange(n // 2) + 0.5) * 2.2 - 0.5):
            for clip in CLIPS:
                want = REF.interp_axis(src, axis, coords, mode, -1000.0, clip)
                got = interp_axis(src, axis, coords, mode, -1000.0, clip)
                np.testing.assert_array_equal(got, want)
                w = axis_weights(coords, n, mode)
                out = np.full(want.shape, np.nan, np.float32)
                assert interp_axis(src, axis, w, mode, -1000.0, clip, out=out) is out
                np.testing.assert_array_equal(out, want)


def test_weights_must_fit_the_axis():
    src = np.zeros((4, 5, 6), np.float32)
    with pytest.raises(ValueError, match="weights for 6 voxels"):
        interp_axis(src, 1, axis_weights(np.arange(3.0), 6), "clamp")


def test_renumbered_weights_read_only_the_kept_rows():
    src = _source(np.int16, "C")
    w = axis_weights((np.arange(9) + 0.5) * 2.4 - 0.5, src.shape[1])
    kept = w.read()
    assert len(kept) < src.shape[1]
    got = interp_axis(src[:, kept], 1, w.renumbered(kept), clip=(-1024.0, 3071.0))
    np.testing.assert_array_equal(got, interp_axis(src, 1, w, clip=(-1024.0, 3071.0)))
    with pytest.raises(ValueError, match="every source index"):
        w.renumbered(kept[1:])


@pytest.mark.parametrize("coords", [(np.arange(40) + 0.5) / 5.0 - 0.5, np.linspace(-2, 10, 17)])
def test_interp_planes_matches_the_reference_along_axis_0(coords):
    src = _source(np.float32, "C", seed=3)
    np.testing.assert_array_equal(interp_planes(src, coords), REF.interp_axis(src, 0, coords, "clamp"))


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
@pytest.mark.parametrize("clip", [(-1024.0, 3071.0), (0.0, 1000.0), (-1024.5, 3071.0)])
def test_clip_exactly_equals_clipping_the_float32_values(dtype, clip):
    values = _source(dtype, "C", seed=5)
    want = np.clip(values.astype(np.float32), np.float32(clip[0]), np.float32(clip[1]))
    got = values.copy()
    if clip_exactly(got, clip):
        np.testing.assert_array_equal(got.astype(np.float32), want)
    else:  # not representable in the dtype (a fractional or out-of-range bound): left untouched
        assert np.dtype(dtype).kind in "iu" and np.array_equal(got, values)
    assert not clip_exactly(values.astype(np.float64), clip)
