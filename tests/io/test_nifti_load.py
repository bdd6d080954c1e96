"""read_nifti and load_volume."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

import fmct.io
from fmct.io.errors import InvalidScan, SkipScan
from fmct.io.load import load_volume
from fmct.io.nifti import read_nifti


def _affine():
    a = np.diag([-0.8, 0.9, 2.0, 1.0])
    a[:3, 3] = [40.0, -30.0, 10.0]
    return a


def test_read_nifti_honours_affine_and_scaling(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 50
    img = nib.Nifti1Image(data, _affine())
    img.header.set_slope_inter(2.0, -1000.0)
    img.set_sform(_affine(), code=1)
    nib.save(img, tmp_path / "scan one.nii.gz")
    vol = read_nifti(tmp_path / "scan one.nii.gz")
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, data * 2.0 - 1000.0)
    np.testing.assert_allclose(vol.affine, _affine())
    assert vol.meta["scan_id"] == "scan_one" and vol.meta["source_kind"] == "nifti"


def test_read_nifti_qform_only(tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), None)
    img.set_qform(_affine(), code=1)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "q.nii")
    np.testing.assert_allclose(read_nifti(tmp_path / "q.nii").affine, _affine(), atol=1e-5)


def test_read_nifti_4d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), _affine()), tmp_path / "one.nii.gz")
    assert read_nifti(tmp_path / "one.nii.gz").shape == (3, 4, 5)
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 2), np.float32), _affine()), tmp_path / "two.nii.gz")
    with pytest.raises(InvalidScan, match="2 volumes"):
        read_nifti(tmp_path / "two.nii.gz")


def test_read_nifti_bad(tmp_path):
    bad = np.zeros((3, 3, 3), np.float32)
    bad[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(bad, _affine()), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidScan, match="NaN"):
        read_nifti(tmp_path / "nan.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InvalidScan, match="unreadable NIfTI"):
        read_nifti(tmp_path / "junk.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), _affine()), tmp_path / "cut.nii.gz")
    raw = (tmp_path / "cut.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidScan, match="unreadable NIfTI"):
        read_nifti(tmp_path / "cut.nii.gz")


def test_load_volume_dicom_folder_file_and_nifti(factory, tmp_path):
    s = factory.ct(n=12)
    factory.ct(n=2, folder=s.folder.parent / "scout_sibling")  # unusable series elsewhere: not in s.folder
    vol = load_volume(s.folder)
    np.testing.assert_array_equal(vol.array, s.hu)
    vol = fmct.io.load_volume(s.files[3])  # one file -> its series
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-5)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), _affine()), tmp_path / "x.nii.gz")
    assert load_volume(tmp_path / "x.nii.gz").shape == (3, 3, 3)


def test_load_volume_selection(factory, tmp_path):
    root = tmp_path / "study"
    factory.ct(n=12, dz=5.0, folder=root / "thick")
    thin = factory.ct(n=24, dz=2.5, folder=root / "thin")
    factory.ct(n=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), folder=root / "scout")
    with pytest.raises(InvalidScan, match="2 usable CT series") as err:
        load_volume(root)
    # which is where: relative to the folder given (its own name first), never the absolute path above it
    assert "study/thick (" in str(err.value) and "study/thin (" in str(err.value)
    assert str(tmp_path) not in str(err.value)
    assert "--series thinnest" in str(err.value)
    vol = load_volume(root, multiple="thinnest")
    np.testing.assert_array_equal(vol.array, thin.hu)
    assert any("thinnest of 2" in w for w in vol.meta["warnings"])


def test_load_volume_errors(factory, tmp_path):
    with pytest.raises(InvalidScan, match="no such file"):
        load_volume(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(InvalidScan, match="no DICOM series"):
        load_volume(empty)
    scout = factory.ct(n=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    with pytest.raises(SkipScan, match="localizer"):
        load_volume(scout.folder)
    both = tmp_path / "both"
    factory.ct(n=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), folder=both)
    mr = factory.ct(n=12, modality="MR", sop="1.2.840.10008.5.1.4.1.1.4", folder=both)
    ds = pydicom.dcmread(mr.files[0])
    assert ds.Modality == "MR"
    with pytest.raises(SkipScan, match="no usable CT series among 2 series"):
        load_volume(both)
