"""crop_head: the faster crop (windowed removal of other bodies, int16 out in one pass) gives exactly the
volumes of the code before the speed work (``reference_crop.py``), on heads with tables, head holders and
bodies touching the array's edges, in any memory layout; the head mask labelled in memory order (by
connected-components-3d when installed) picks the same head as ``ndimage.label`` in C order, ties included."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import reference_crop  # tests/preprocess/conftest.py puts this folder on sys.path
from scipy import ndimage

from fmct.io.volume import Volume
from fmct.preprocess import crop as crop_module
from fmct.preprocess.crop import _above, crop_head, head_box, label_6
from fmct.preprocess.pipeline import _to_int16


@pytest.fixture(params=["cc3d", "scipy"])
def labeller(request, monkeypatch):
    """Run the test with each labelling backend: connected-components-3d (when installed) and scipy."""
    if request.param == "cc3d":
        pytest.importorskip("cc3d")
    else:
        monkeypatch.setitem(sys.modules, "cc3d", None)  # import cc3d raises ImportError
    return request.param


def _scene(seed: int, shape=(70, 64, 58)) -> np.ndarray:
    """Air with noise, a head (ellipsoid, 40 HU, a 1200 HU shell) and 0-4 other slabs/blobs, some cut by
    the array's edges, some next to the head."""
    rng = np.random.default_rng(seed)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    c = rng.uniform(0.35, 0.65, 3) * np.array(shape)
    r = (((idx - c) / (np.array(shape) * rng.uniform(0.18, 0.3, 3))) ** 2).sum(-1)
    hu = np.where(r <= 1.0, 40.0, -1000.0) + np.where((r > 0.8) & (r <= 1.0), 1160.0, 0.0)
    for _ in range(rng.integers(0, 5)):
        lo = rng.integers(-5, np.array(shape) - 3)
        hi = lo + rng.integers(2, np.array(shape) // 2)
        sl = tuple(slice(max(a, 0), b) for a, b in zip(lo, hi, strict=True))
        hu[sl] = np.where(hu[sl] > -500, hu[sl], rng.uniform(-200, 400))
    return (hu + rng.normal(0, 20, shape)).astype(np.float32)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("layout", ["C", "transposed", "flipped"])
def test_crop_head_is_bit_identical_to_the_reference(seed, layout):
    arr = _scene(seed)
    if layout == "transposed":  # (X, Y, Z) view of a (Z, Y, X) buffer, as the resampler returns
        arr = np.ascontiguousarray(arr.transpose(2, 1, 0)).transpose(2, 1, 0)
    elif layout == "flipped":
        arr = np.ascontiguousarray(arr[::-1, :, ::-1])[::-1, :, ::-1]
    spacing = [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5), (0.5, 1.0, 1.5)][seed % 3]
    vol = Volume(arr, np.diag([*spacing, 1.0]), {})
    want, want_box = reference_crop.crop_head(vol, -500.0, 5.0)
    got, box = crop_head(vol, -500.0, 5.0)
    assert box == want_box and got.array.dtype == np.float32 and got.array.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got.array, want.array)
    np.testing.assert_array_equal(got.affine, want.affine)
    got16, _ = crop_head(vol, -500.0, 5.0, to_int16=True)
    assert got16.array.dtype == np.int16 and got16.array.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got16.array, _to_int16(want.array.copy()))
    assert -2000.0 < arr.min() and arr.max() < 3071.0  # known to fit int16: rounded without saturating
    fast16, _ = crop_head(vol, -500.0, 5.0, to_int16=True, value_range=(-2000.0, 3071.0))
    assert fast16.array.dtype == np.int16 and fast16.array.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(fast16.array, got16.array)


def test_to_int16_rounds_half_to_even_and_saturates():
    arr = np.array([[[0.5, 1.5, -2.5, 4e4, -4e4, 12.4999]]], np.float32).repeat(3, 0)
    vol = Volume(np.pad(arr, 3, constant_values=-1000.0), np.eye(4), {})
    for value_range in (None, (-4e4, 4e4)):  # values beyond int16 (or not known not to be): saturated
        got, _ = crop_head(vol, -5e4, 0.0, True, value_range)
        assert got.array.dtype == np.int16
        assert sorted(set(got.array.ravel().tolist())) == [-32768, -1000, -2, 0, 2, 12, 32767]


def _layout(arr: np.ndarray, layout: str) -> np.ndarray:
    if layout == "transposed":
        return np.ascontiguousarray(arr.transpose(2, 1, 0)).transpose(2, 1, 0)
    if layout == "flipped":
        return np.ascontiguousarray(arr[::-1, :, ::-1])[::-1, :, ::-1]
    return arr


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("layout", ["C", "transposed", "flipped"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_head_box_matches_the_reference(seed, layout, dtype, labeller):
    ref = reference_crop
    arr = _layout(np.rint(_scene(seed)).astype(dtype), layout)
    spacing = [(1.0, 1.0, 1.0), (0.45, 0.45, 5.0), (0.5, 1.0, 1.5)][seed % 3]
    for threshold in (-500.0, -500.5, 10.0):
        want = ref.head_box(arr, spacing, threshold, 5.0)
        got = head_box(arr, spacing, threshold, 5.0)
        assert got[0] == want[0] and got[3] == want[3]
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.parametrize("layout", ["C", "transposed", "flipped"])
def test_a_tie_between_the_largest_bodies_is_broken_as_before(layout, labeller):
    """Two bodies of the same size: the head is the one ``ndimage.label`` in C order numbers first, whatever
    order the mask is labelled in."""
    ref = reference_crop
    arr = np.full((30, 28, 26), -1000.0, np.float32)
    arr[2:8, 20:26, 15:21] = 40.0  # first in C order (lowest x) ...
    arr[20:26, 2:8, 3:9] = 40.0  # ... but not first in a (z, y, x) memory order
    arr[12:14, 12:14, 12:14] = 40.0
    arr = _layout(arr, layout)
    want_head, want_others = ref.head_mask_coarse(arr, -500.0, (1, 1, 1))
    head, others = crop_module.head_mask_coarse(arr, -500.0, (1, 1, 1))
    np.testing.assert_array_equal(head, want_head)
    np.testing.assert_array_equal(others, want_others)
    assert head[2:8, 20:26, 15:21].all()


def test_label_6_is_ndimage_label(labeller):
    rng = np.random.default_rng(0)
    cases = [((20, 31, 17), 0.3), ((9, 8, 7), 0.0), ((9, 8, 7), 1.0), ((40, 30, 20), 0.55)]
    cases += [((1, 5, 7), 0.5), ((5, 7, 1), 0.5), ((1, 1, 1), 1.0), ((3, 300, 2), 0.5)]  # thin arrays
    for shape, fill in cases:
        mask = rng.random(shape) < fill
        labels, n = label_6(mask)
        want, n_want = ndimage.label(mask)
        assert n == n_want and np.array_equal(labels > 0, mask)
        pairs = np.unique(np.c_[labels.ravel(), want.ravel()], axis=0)  # the same components: one to one
        assert len(pairs) == n + (not mask.all())


def test_above_compares_integers_as_their_float_values():
    values = np.arange(-600, 600, dtype=np.int16).reshape(12, 10, 10)
    for threshold in (-500.0, -500.5, -499.5, 0.0, 7.25, 1e6, -1e6, float("nan")):
        np.testing.assert_array_equal(_above(values, threshold), values > threshold)
