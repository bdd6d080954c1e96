"""read_series: HU, slice order, affine, rescale, tilt, gaps, duplicates, big-endian."""

from __future__ import annotations

import numpy as np
import pytest

from fmct.io.dicom import discover, read_series
from fmct.io.errors import InvalidScan


def _only(folder):
    found = discover([folder])
    assert len(found.series) == 1, found
    return found.series[0]


def test_shuffled_names_and_instance_numbers_sorted_by_position(factory):
    s = factory.ct(n=20, shuffle_seed=3)
    vol = read_series(_only(s.folder))
    assert vol.array.dtype == np.int16  # integer rescale: exact HU without a float32 copy of the scan
    assert vol.shape == (32, 32, 20)
    np.testing.assert_array_equal(vol.array, s.hu)
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-5)
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5))
    assert vol.meta["n_slices"] == 20 and vol.meta["tilt_deg"] == pytest.approx(0.0, abs=1e-3)
    assert vol.meta["warnings"] == []


def test_affine_maps_voxels_to_ras(factory):
    s = factory.ct(n=12, origin=(10.0, 20.0, -5.0))
    vol = read_series(_only(s.folder))
    # voxel (0,0,0) is at DICOM LPS (10, 20, -5) = RAS (-10, -20, -5); +X goes to patient left (R decreases)
    np.testing.assert_allclose(vol.origin, [-10.0, -20.0, -5.0], atol=1e-6)
    np.testing.assert_allclose(vol.affine @ [1, 0, 0, 1], [-10.7, -20.0, -5.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(vol.affine @ [0, 0, 1, 1], [-10.0, -20.0, -2.5, 1.0], atol=1e-6)


def test_per_slice_rescale(factory):
    s = factory.ct(n=12, rescale=[(1.0, -1024.0), (2.0, -1000.0), (0.5, 0.0), (1.0, 0.0)])
    vol = read_series(_only(s.folder))
    assert vol.array.dtype == np.float32  # a slope of 0.5 gives fractional HU
    np.testing.assert_allclose(vol.array, s.hu, atol=0.5)


def test_integer_rescale_read_as_exact_int16(factory):
    s = factory.ct(n=12, rescale=[(1.0, -1024.0), (2.0, -1000.0)])
    vol = read_series(_only(s.folder))
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, s.hu)


def test_hu_beyond_int16_fall_back_to_float32(factory):
    import pydicom

    s = factory.ct(n=12)
    ds = pydicom.dcmread(s.files[5])  # files are in slice order
    ds.RescaleSlope, ds.RescaleIntercept = "2", "0"
    ds.PixelData = np.full((32, 32), 30000, "<i2").tobytes()  # 60000 HU: beyond int16
    ds.save_as(s.files[5], enforce_file_format=True)
    vol = read_series(_only(s.folder))
    assert vol.array.dtype == np.float32
    expected = s.hu.copy()
    expected[:, :, 5] = 60000.0
    np.testing.assert_array_equal(vol.array, expected)


def test_descending_positions_and_reversed_stack(factory):
    # slices written with the stack going towards the feet: sorted ascending along the normal anyway
    s = factory.ct(n=12, z_mm=np.arange(12)[::-1] * 2.0)
    vol = read_series(_only(s.folder))
    np.testing.assert_array_equal(vol.array, s.hu[:, :, ::-1])
    assert vol.affine[2, 2] == pytest.approx(2.0)


def test_oblique_rotation_about_z(factory):
    a = np.radians(20)
    s = factory.ct(n=12, row_cos=(np.cos(a), np.sin(a), 0.0), col_cos=(-np.sin(a), np.cos(a), 0.0))
    vol = read_series(_only(s.folder))
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-5)
    np.testing.assert_array_equal(vol.array, s.hu)


def test_gantry_tilt_gives_sheared_affine(factory):
    t = np.radians(15)
    # image plane tilted about the L-R axis, slice positions advance straight along S (z)
    s = factory.ct(n=14, row_cos=(1, 0, 0), col_cos=(0, np.cos(t), -np.sin(t)), stack_dir=(0, 0, 1), dz=2.0)
    vol = read_series(_only(s.folder))
    assert vol.meta["tilt_deg"] == pytest.approx(-15.0, abs=0.01)  # slices drift anterior going up
    assert any("gantry tilt -15.0 degrees" in w for w in vol.meta["warnings"])
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-5)
    np.testing.assert_allclose(vol.affine[:3, 2], [0, 0, 2.0], atol=1e-6)  # stacking vector, not the normal
    np.testing.assert_array_equal(vol.array, s.hu)


def test_gantry_tilt_with_axial_orientation_and_shifted_positions(factory):
    # the other way scanners record tilt: IOP axial, positions drift along the column (A-P) direction
    t = np.radians(20)
    s = factory.ct(n=12, stack_dir=(0, np.sin(t), np.cos(t)), dz=2.0)
    vol = read_series(_only(s.folder))
    assert vol.meta["tilt_deg"] == pytest.approx(20.0, abs=0.01)
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-5)
    np.testing.assert_array_equal(vol.array, s.hu)
    # voxel (0, 0, k) follows the recorded slice positions, converted to RAS
    k = 7
    lps = np.array([-12.0, -20.0, 30.0]) + k * 2.0 * np.array([0, np.sin(t), np.cos(t)])
    np.testing.assert_allclose(vol.affine @ [0, 0, k, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-4)


def test_small_jitter_is_regular(factory):
    z = np.arange(15) * 2.5
    z[[3, 8]] += 0.05
    s = factory.ct(n=15, z_mm=z)
    vol = read_series(_only(s.folder))
    assert vol.shape[2] == 15 and vol.meta["warnings"] == []


def test_uneven_spacing_resampled_with_warning(factory):
    z = np.array([0, 2.5, 5.0, 7.0, 10.0, 12.5, 15.75, 17.5, 20.0, 22.5, 25.0, 27.5])
    s = factory.ct(n=len(z), z_mm=z)
    vol = read_series(_only(s.folder))
    assert vol.shape[2] == 12
    assert vol.spacing[2] == pytest.approx(2.5)
    assert any("variable slice spacing" in w for w in vol.meta["warnings"])
    # HU is linear in z, so linear interpolation on the regular grid is exact
    expected = factory_pattern(32, 32, np.arange(12) * 2.5)
    np.testing.assert_allclose(vol.array, expected, atol=1e-3)


def factory_pattern(cols, rows, z):
    i = np.arange(cols)[:, None, None]
    j = np.arange(rows)[None, :, None]
    return 3 * i + 5 * j + 4 * z[None, None, :] - 500


@pytest.mark.parametrize("n_missing", [1, 2])
def test_missing_slices_filled(factory, n_missing):
    s = factory.ct(n=16, dz=2.0)
    for f in s.files[7 : 7 + n_missing]:
        f.unlink()
    vol = read_series(_only(s.folder))
    assert vol.shape[2] == 16
    np.testing.assert_allclose(vol.array, s.hu, atol=1e-3)
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-5)
    assert any(f"filled {n_missing} missing slice" in w for w in vol.meta["warnings"])


def test_three_missing_slices_invalid(factory):
    s = factory.ct(n=16, dz=2.0)
    for f in s.files[5:8]:
        f.unlink()
    with pytest.raises(InvalidScan, match="3 slices missing"):
        read_series(_only(s.folder))


def test_duplicate_identical_slices_dropped(factory):
    s = factory.ct(n=12)
    (s.folder / "copy_of_slice").write_bytes(s.files[4].read_bytes())
    vol = read_series(_only(s.folder))
    assert vol.shape[2] == 12
    np.testing.assert_array_equal(vol.array, s.hu)
    assert any("duplicate" in w for w in vol.meta["warnings"])


def test_duplicate_position_different_pixels_invalid(factory):
    import pydicom
    from pydicom.uid import generate_uid

    s = factory.ct(n=12)
    ds = pydicom.dcmread(s.files[4])
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = (np.frombuffer(ds.PixelData, "<i2") + 7).astype("<i2").tobytes()
    ds.save_as(s.folder / "other", enforce_file_format=True)
    with pytest.raises(InvalidScan, match="share a position"):
        read_series(_only(s.folder))


def test_big_endian(factory):
    s = factory.ct(n=12, big_endian=True, rescale=[(1.0, -1024.0), (2.0, -1000.0)])
    vol = read_series(_only(s.folder))
    np.testing.assert_allclose(vol.array, s.hu, atol=0.5)
    assert vol.meta["transfer_syntax"] == "Explicit VR Big Endian"


def test_meta_has_no_phi(factory):
    s = factory.ct(n=12)
    ref = _only(s.folder)
    vol = read_series(ref)
    text = repr(vol.meta) + repr(ref)
    for secret in ("Doe", "PAT-0001", "19700101", "ACC123", "General Hospital", s.series_uid):
        assert secret not in text
    assert vol.meta["scan_id"] == ref.scan_id and vol.meta["manufacturer"] == "ACME"
    assert vol.meta["kernel"] == "H30s" and vol.meta["slice_thickness"] == 2.5
