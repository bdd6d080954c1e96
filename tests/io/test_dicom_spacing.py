"""read_series on stacks whose spacing changes (with their slice thickness), real gaps, and the tilt's sign."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from fmct.io.dicom import discover, read_series
from fmct.io.dicom_geometry import plan_stack, tilt_degrees
from fmct.io.errors import InvalidScan


def _only(folder):
    found = discover([folder])
    assert len(found.series) == 1, found
    return found.series[0]


def _set_thickness(files, thickness):
    for f, t in zip(files, thickness, strict=True):
        ds = pydicom.dcmread(f)
        ds.SliceThickness = f"{t:g}"
        ds.save_as(f, enforce_file_format=True)


def _ge_like_positions(n4: int = 14, n7: int = 14, step: float = 1.08) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm, perpendicular) and thicknesses of ``n4`` 4 mm slices 4 mm apart, one short step,
    then ``n7`` 7 mm slices 7 mm apart (the GE series of dcm_qa_ct: 13 x 4 mm and 13 x 7 mm steps)."""
    z4 = np.arange(n4) * 4.0
    z7 = z4[-1] + step + np.arange(n7) * 7.0
    return np.r_[z4, z7], np.r_[np.full(n4, 4.0), np.full(n7, 7.0)]


def _pattern(cols, rows, z):
    i = np.arange(cols)[:, None, None]
    j = np.arange(rows)[None, :, None]
    return 3 * i + 5 * j + 4 * np.asarray(z)[None, None, :] - 500


def test_variable_spacing_covered_by_thickness_is_resampled(factory):
    z, thick = _ge_like_positions()
    s = factory.ct(n=len(z), z_mm=z, rows=16, cols=16)
    _set_thickness(s.files, thick)
    vol = read_series(_only(s.folder))
    assert any("variable slice spacing 4.0-7.0 mm resampled" in w for w in vol.meta["warnings"])
    step = vol.meta["slice_spacing"]
    assert step == pytest.approx(4.0, abs=0.05) and vol.spacing[2] == pytest.approx(step)
    # first and last slice stay where the files put them; HU is linear in z, so interpolation is exact up
    # to the rounding of the stored integers (0.5 HU)
    assert vol.shape[2] == int(round(z[-1] / step)) + 1
    np.testing.assert_allclose(vol.affine[:3, 3], s.affine[:3, 3], atol=1e-5)
    np.testing.assert_allclose(
        (vol.affine @ [0, 0, vol.shape[2] - 1, 1])[2], s.affine[2, 3] + z[-1], atol=1e-4
    )
    np.testing.assert_allclose(vol.array, _pattern(16, 16, np.arange(vol.shape[2]) * step), atol=0.501)


def test_same_positions_with_thin_slices_are_a_real_gap(factory):
    # the 7 mm steps are not covered by 4 mm slices: 13 slices really are missing
    z, _ = _ge_like_positions()
    s = factory.ct(n=len(z), z_mm=z, rows=16, cols=16)
    _set_thickness(s.files, np.full(len(z), 4.0))
    with pytest.raises(InvalidScan, match="13 slices missing"):
        read_series(_only(s.folder))


def test_real_gap_in_a_tilted_stack_refused_with_perpendicular_spacing(factory):
    t = np.radians(20)
    s = factory.ct(
        n=20, row_cos=(1, 0, 0), col_cos=(0, np.cos(t), -np.sin(t)), stack_dir=(0, 0, 1), dz=2.0, rows=16
    )
    for f in s.files[6:10]:  # 4 of 20 slices gone: an 10 mm hole along the stack
        f.unlink()
    with pytest.raises(InvalidScan, match="4 slices missing") as err:
        read_series(_only(s.folder))
    # 2 mm along the tilted stack is 2 cos(20) = 1.88 mm between the slice planes
    assert f"median spacing {2.0 * np.cos(t):.2f} mm" in str(err.value)
    assert "perpendicular" in str(err.value)


def test_tilted_variable_spacing_reports_perpendicular_spacing(factory):
    t = np.radians(18.5)
    z, thick = _ge_like_positions(6, 6)
    along = z / np.cos(t)  # positions advance along z; the planes are z * cos(t)... apart
    s = factory.ct(
        n=len(z),
        z_mm=along,
        row_cos=(1, 0, 0),
        col_cos=(0, np.cos(t), -np.sin(t)),
        stack_dir=(0, 0, 1),
        rows=16,
        cols=16,
    )
    _set_thickness(s.files, thick)
    vol = read_series(_only(s.folder))
    assert vol.meta["slice_spacing"] == pytest.approx(4.0, abs=0.05)
    assert vol.meta["tilt_deg"] == pytest.approx(-18.5, abs=0.01)
    assert any("variable slice spacing 4.0-7.0 mm" in w for w in vol.meta["warnings"])
    # the affine's stacking column runs along z (the table), its length the along-stack step
    col = vol.affine[:3, 2]
    np.testing.assert_allclose(col[:2], 0.0, atol=1e-6)
    assert col[2] == pytest.approx(vol.meta["slice_spacing"] / np.cos(t), rel=1e-6)


@pytest.mark.parametrize("sign", [1, -1])
def test_tilt_sign_kept(factory, sign):
    t = np.radians(15) * sign
    s = factory.ct(n=12, row_cos=(1, 0, 0), col_cos=(0, np.cos(t), -np.sin(t)), stack_dir=(0, 0, 1), dz=2.0)
    vol = read_series(_only(s.folder))
    assert vol.meta["tilt_deg"] == pytest.approx(-15.0 * sign, abs=0.01)
    assert any(f"gantry tilt {-15.0 * sign:.1f} degrees" in w for w in vol.meta["warnings"])


def test_tilt_sign_independent_of_stack_direction_and_image_flip():
    t = np.radians(10)
    normal = np.array([0.0, -np.sin(t), np.cos(t)])  # superior normal leaning anterior
    u = np.array([0.0, 0.0, 1.0])
    assert tilt_degrees(u, normal) == pytest.approx(10.0)
    assert tilt_degrees(-u, -normal) == pytest.approx(10.0)  # stack sorted the other way round
    assert tilt_degrees(u, np.array([0.0, 0.0, 1.0])) == 0.0


def test_plan_stack_unknown_thickness_falls_back_to_median():
    z, _ = _ge_like_positions()
    with pytest.raises(InvalidScan, match="13 slices missing"):
        plan_stack(z, thickness=np.full(len(z), np.nan))
    plan = plan_stack(z, thickness=np.r_[np.full(14, 4.0), np.full(14, 7.0)])
    assert plan.targets is not None and plan.targets[0] == 0.0 and plan.targets[-1] == pytest.approx(z[-1])
