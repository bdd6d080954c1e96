import numpy as np
import pytest
import reference_resample  # tests/preprocess/conftest.py puts this folder on sys.path
from geomcases import CASES
from geomcases import affine_from as _affine
from geomcases import rot_z as _rot_z

from fmct.preprocess import PreprocessConfig, preprocess
from fmct.preprocess.geometry import is_axis_aligned, nearest_axis_map, to_ras_isotropic

MARKER = (6.0, -4.0, 9.0)


@pytest.mark.parametrize("name", list(CASES))
def test_marker_world_position_survives_reorient_and_resample(name, make_volume, helpers):
    shape, affine = CASES[name]
    vol = make_volume(shape, affine, centre=(0, 0, 0), radius=24.0, marker=MARKER)
    truth = helpers.centroid(vol)  # the sampled marker, so only the resampling error is measured
    assert np.linalg.norm(truth - np.asarray(MARKER)) < 1.0
    out = preprocess(vol, PreprocessConfig(spacing=1.0, crop_head=False))
    assert out.array.dtype == np.int16
    assert np.allclose(out.affine[:3, :3], np.eye(3))  # RAS, 1 mm isotropic
    got = helpers.centroid(out)
    assert np.linalg.norm(got - truth) <= 1.0, (name, got, truth)
    expected_path = "axis-aligned" if name in ("lps_anisotropic", "permuted") else "oblique"
    assert out.meta["preprocess"]["resampling"] == expected_path


def test_axis_map_and_snapping():
    aff = _affine([[0, -1.0, 0], [0, 0, 2.0], [0.5, 0, 0]], [0, 0, 0])
    axes = nearest_axis_map(aff)
    assert axes.perm == (2, 0, 1) and axes.flip == (False, True, False)
    # a 0.01 degree wobble moves no voxel by 0.1 mm: snapped; 5 degrees is oblique
    small = np.eye(4)
    small[:3, :3] = _rot_z(0.01)
    assert is_axis_aligned(small, (100, 100, 100), tol_mm=0.1) is not None
    big = np.eye(4)
    big[:3, :3] = _rot_z(5.0)
    assert is_axis_aligned(big, (100, 100, 100), tol_mm=0.1) is None


def test_aligned_resample_follows_the_affine_exactly():
    # a linear ramp along world R is reproduced exactly by trilinear interpolation
    aff = _affine([[-0.8, 0, 0], [0, 1.5, 0], [0, 0, 2.0]], [20.0, -5.0, 3.0])
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (40, 20, 10)], indexing="ij"), -1)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    from fmct.io.volume import Volume

    vol = Volume((world[..., 0] * 10.0).astype(np.float32), aff)
    out, path = to_ras_isotropic(vol, 1.0)
    assert path == "axis-aligned"
    oidx = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), -1)
    ow = oidx @ out.affine[:3, :3].T + out.affine[:3, 3]
    inside = (ow[..., 0] >= world[..., 0].min()) & (ow[..., 0] <= world[..., 0].max())
    assert np.abs(out.array - ow[..., 0] * 10.0)[inside].max() < 1e-2
    assert np.shares_memory(out.array, vol.array) is False


def test_input_is_not_modified(make_volume):
    vol = make_volume(
        (40, 40, 20),
        _affine([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], [-20, -20, -10]),
        radius=15.0,
        table_z=-12.0,
    )
    before = vol.array.copy()
    preprocess(vol, PreprocessConfig(spacing=1.0))
    assert np.array_equal(vol.array, before)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize(
    "spacing",  # source mm along (X, Y, Z): thick slices, thin ones, upsampled in-plane, unchanged axes
    [
        (0.45, 0.45, 5.0),
        (0.9, 0.9, 2.0),
        (1.6, 0.45, 1.0),
        (1.0, 1.0, 3.0),
        (0.45, 0.45, 1.0),
        (1.0, 1.0, 1.0),
    ],
)
@pytest.mark.parametrize("clip", [(-1024.0, 3071.0), (-1000.5, 900.0), None])
def test_resize_separable_matches_the_reference(dtype, spacing, clip):
    """The separable resize (weights once per pass, only the rows the next pass reads, their clip at once,
    z a plane at a time) gives bit for bit the old one's values on DICOM-like pre-cropped regions."""
    from fmct.preprocess import geometry

    rng = np.random.default_rng(7)
    stack = rng.normal(0.0, 900.0, (17, 90, 70)).astype(dtype)  # (Z, Y, X) in memory, as a DICOM stack
    region = stack.transpose(2, 1, 0)[3:64, 5:83, 1:16]  # (X, Y, Z) view of a head box
    scales = tuple(s / 1.0 for s in spacing)
    out_shape = [int(np.floor(n * sc)) for n, sc in zip(region.shape, scales, strict=True)]
    want = reference_resample._resize_separable(region, out_shape, scales, clip)
    got = geometry._resize_separable(region, out_shape, scales, clip)
    assert got.shape == want.shape == tuple(out_shape)
    np.testing.assert_array_equal(got, want)
