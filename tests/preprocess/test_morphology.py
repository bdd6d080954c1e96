"""fmct.preprocess.morphology: each function gives exactly the mask of the scipy call it replaces, on random
blobs (holes, bodies cut by the array's faces, empty and full masks) and for the spacings defacing meets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fmct.preprocess.morphology import (
    _squared_radius,
    close_cross,
    dilate_cross,
    fill_holes,
    fill_holes_axial,
    within_distance,
)


def _blobs(seed: int, shape=(41, 37, 23)) -> np.ndarray:
    """Smoothed noise thresholded into blobs with holes, some cut by the array's faces."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(1.0, 3.0))
    return field > np.quantile(field, rng.uniform(0.3, 0.9))


def _shell(shape=(40, 44, 30)) -> np.ndarray:
    """A closed ellipsoidal shell (a skull) with a hole through its side: cavities open and closed."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    r = (((idx - np.array(shape) / 2) / (np.array(shape) * 0.4)) ** 2).sum(-1)
    shell = (r > 0.7) & (r <= 1.0)
    shell[:, :4, 12:16] = False
    return shell


MASKS = [_blobs(s) for s in range(12)] + [
    _shell(),
    np.zeros((9, 8, 7), bool),
    np.ones((9, 8, 7), bool),
    np.pad(np.ones((3, 3, 3), bool), 2),
]


@pytest.mark.parametrize("i", range(len(MASKS)))
def test_dilate_close_and_fill_equal_scipy(i):
    m = MASKS[i]
    np.testing.assert_array_equal(close_cross(m), ndimage.binary_closing(m))
    for n in (1, 2, 3):
        np.testing.assert_array_equal(dilate_cross(m, n), ndimage.binary_dilation(m, iterations=n))
    np.testing.assert_array_equal(fill_holes(m), ndimage.binary_fill_holes(m))
    axial = np.stack([ndimage.binary_fill_holes(m[:, :, z]) for z in range(m.shape[2])], axis=2)
    np.testing.assert_array_equal(fill_holes_axial(m), axial)


@pytest.mark.parametrize("spacing", [2.0, 1.0, 1.5, 1.6, 2.1, 2.4, 0.7, 3.0])
@pytest.mark.parametrize("radius", [15.0, 6.0, 4.2, 0.0, -1.0])
def test_within_distance_equals_the_distance_transform(spacing, radius):
    for m in MASKS:
        want = ndimage.distance_transform_edt(~m, sampling=spacing) <= radius
        np.testing.assert_array_equal(within_distance(m, spacing, radius), want)


def test_squared_radius_is_the_largest_squared_distance_inside():
    assert _squared_radius(2.0, 15.0) == 56  # 7.5 voxels: 7² + 2² + 2² = 57 is out
    assert _squared_radius(1.0, 15.0) == 225  # on the sphere counts (<=)
    assert _squared_radius(1.0, 0.0) == 0
    assert _squared_radius(1.0, -1.0) is None  # nothing within: left to the distance transform
