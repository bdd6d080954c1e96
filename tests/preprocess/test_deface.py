from pathlib import Path

import numpy as np
import pytest
import reference_deface  # tests/preprocess/conftest.py puts this folder on sys.path

from fmct.io.dicom import discover, read_series
from fmct.io.errors import InvalidScan
from fmct.io.volume import Volume
from fmct.preprocess import PreprocessConfig, preprocess
from fmct.preprocess.deface import brain_mask, deface, face_mask


def _ellipsoid(world, centre, radii):
    return ((((world - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(-1)) <= 1.0


def _synthetic_head():
    """RAS 1 mm head: brain (35 HU) in a 6 mm skull (1000 HU) under 4 mm scalp (40 HU), a neck, and a
    'face' (soft tissue with a bony jaw) in front of and below the brain."""
    aff = np.eye(4)
    aff[:3, 3] = [-50.0, -60.0, -75.0]
    shape = (101, 141, 126)
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    world = idx + aff[:3, 3]
    r = np.array([38.0, 46.0, 36.0])
    hu = np.full(shape, -1000.0, np.float32)
    neck = (np.hypot(world[..., 0], world[..., 1] + 5.0) <= 22.0) & (world[..., 2] < -20.0)
    face = _ellipsoid(world, (0, 52, -40), (30, 18, 28))
    jaw = _ellipsoid(world, (0, 55, -50), (20, 8, 8))
    hu[neck | face] = 40.0
    hu[jaw] = 800.0
    hu[_ellipsoid(world, (0, 0, 0), r + 10)] = 40.0
    hu[_ellipsoid(world, (0, 0, 0), r + 6)] = 1000.0
    brain = _ellipsoid(world, (0, 0, 0), r)
    hu[brain] = 35.0
    hu[_ellipsoid(world, (0, -5, 5), (6, 12, 6))] = 5.0  # a ventricle
    return Volume(hu, aff), world, brain, face | jaw


def test_deface_removes_the_face_and_keeps_brain_and_vault():
    vol, world, brain, face = _synthetic_head()
    out = preprocess(vol, PreprocessConfig(crop_head=False, deface=True))
    assert out.shape == vol.shape and np.allclose(out.affine, vol.affine)
    a = out.array
    kept = (a[brain] == vol.array[brain]).mean()
    assert kept >= 0.999, kept
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~brain)
    far_face = face & (dist > 18.0)  # beyond the protected margin (15 mm) plus the 2 mm working grid
    assert far_face.sum() > 5000
    assert (a[far_face] == -1000).mean() >= 0.99
    vault = (vol.array > 300) & (world[..., 2] > 0)  # upper skull
    assert (a[vault] == vol.array[vault]).all()
    back_of_neck = (world[..., 2] < -50) & (world[..., 1] < -12) & (vol.array > -500)
    assert (a[back_of_neck] == vol.array[back_of_neck]).all()
    info = out.meta["preprocess"]["deface"]
    assert info["removed_ml"] > 5 and info["brain_ml"] == pytest.approx(brain.sum() / 1000, rel=0.1)


def test_deface_refuses_a_scan_without_brain():
    hu = np.full((40, 40, 40), -1000.0, np.float32)
    hu[5:35, 5:35, 5:35] = 40.0  # a block of soft tissue, no skull
    with pytest.raises(InvalidScan, match="deface"):
        preprocess(Volume(hu, np.eye(4)), PreprocessConfig(deface=True))


# --- the faster masks are the masks of the code before the speed work (reference_deface.py) ---

HERE = Path(__file__).resolve().parent
REAL_GE = HERE.parents[1] / ".." / "shared" / "realdata" / "dcm_qa_ct" / "GE"


def _assert_masks_equal(vol: Volume, margin_mm: float = 15.0):
    """brain_mask and face_mask of :func:`deface`'s working grid equal the reference's."""
    ref = reference_deface
    s = vol.spacing[0]
    f = max(1, int(round(2.0 / s)))
    coarse = np.asarray(vol.array, dtype=np.float32)[::f, ::f, ::f]
    brain = brain_mask(coarse)
    np.testing.assert_array_equal(brain, ref.brain_mask(coarse))
    assert brain.sum() > 1000
    np.testing.assert_array_equal(face_mask(brain, s * f, margin_mm), ref.face_mask(brain, s * f, margin_mm))


def _ingested(vol: Volume, spacing: float) -> Volume:
    """What the pipeline hands to defacing: RAS, ``spacing`` mm, cropped to the head (float32)."""
    out = preprocess(vol, PreprocessConfig(spacing=spacing))
    return Volume(out.array.astype(np.float32), out.affine)


@pytest.mark.parametrize("spacing", [1.0, 2.0, 1.5])
def test_masks_equal_the_reference_on_the_synthetic_head(spacing):
    vol = _synthetic_head()[0]
    _assert_masks_equal(_ingested(vol, spacing) if spacing != 1.0 else vol)


@pytest.mark.parametrize("spacing", [1.0, 2.0])
@pytest.mark.parametrize("site,index", [("a", 0), ("b", 1), ("c", 2)])
def test_masks_equal_the_reference_on_demo_scans(site, index, spacing):
    from fmct.synth import synth_scan

    _assert_masks_equal(_ingested(synth_scan(index, site, 0, size=128, with_mask=False).volume, spacing))


@pytest.mark.parametrize("spacing", [1.0, 2.0])
def test_masks_equal_the_reference_on_a_real_head(spacing):
    if not REAL_GE.is_dir():
        pytest.skip(f"real CT DICOM not present at {REAL_GE} (see shared/realdata/README.md)")
    found = discover([REAL_GE])
    _assert_masks_equal(_ingested(read_series(found.series[0]), spacing))


def test_margins_equal_the_reference():
    vol = _ingested(_synthetic_head()[0], 2.0)
    for margin in (0.0, 5.0, 9.9, 30.0):
        _assert_masks_equal(vol, margin)


def test_face_mask_of_an_empty_brain_is_empty_as_before():
    import warnings

    empty = np.zeros((20, 24, 16), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference takes the mean of no voxels
        want = reference_deface.face_mask(empty, 2.0, 15.0)
    np.testing.assert_array_equal(face_mask(empty, 2.0, 15.0), want)
    assert not want.any()


@pytest.mark.parametrize("spacing", [1.0, 0.7, 2.0])
def test_defaced_volume_equals_the_reference(spacing):
    """The whole step (masks on the ~2 mm grid, taken back to every voxel, face set to air) as before."""
    vol = _synthetic_head()[0]
    if spacing != 1.0:
        vol = _ingested(vol, spacing)
    out, info = deface(vol)
    ref_out, ref_info = reference_deface.deface(vol)
    np.testing.assert_array_equal(out.array, ref_out.array)
    assert info == ref_info and info["removed_ml"] > 5
