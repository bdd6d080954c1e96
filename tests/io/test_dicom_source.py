"""The source series of derived DICOM objects: headers in slice order, each frame's own plane geometry."""

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from fmct.io.dicom_source import read_source_series, scrub_phi, series_by_scan_id

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "dcm_qa_ct"


def _only(folder):
    (ref,) = series_by_scan_id([folder]).values()
    return ref


def _lps_world(ds, col: float, row: float) -> np.ndarray:
    """RAS mm of pixel (col, row) of a single-frame image, straight from its header (PS3.3 C.7.6.2.1.1)."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)  # row spacing, column spacing
    lps = ipp + iop[:3] * dc * col + iop[3:] * dr * row
    return lps * np.array([-1.0, -1.0, 1.0])


def test_headers_sorted_by_position_with_their_own_plane_geometry(factory):
    """Shuffled file names and instance numbers, a tilted stack: frames come in position order and each
    frame affine maps (column, row) to the world position its header gives."""
    s = factory.ct(n=12, rows=24, cols=20, stack_dir=(0.0, 0.3, 1.0), shuffle_seed=3)
    src = read_source_series(_only(s.folder))
    assert len(src.datasets) == len(src.frames) == 12 and not src.multiframe
    z = [float(ds.ImagePositionPatient[2]) for ds in src.datasets]
    assert z == sorted(z)
    assert {ds.SOPInstanceUID for ds in src.datasets} == {pydicom.dcmread(f).SOPInstanceUID for f in s.files}
    assert all("PixelData" not in ds for ds in src.datasets)  # headers only
    for k in (0, 5, 11):
        a = src.frame_affine(k)
        for col, row in ((0, 0), (19, 0), (7, 23)):
            np.testing.assert_allclose(
                a @ [col, row, 0, 1], [*_lps_world(src.datasets[k], col, row), 1], atol=1e-6
            )
            np.testing.assert_allclose(a @ [col, row, 0, 1], s.affine @ [col, row, k, 1], atol=1e-4)
        assert abs(np.linalg.norm(a[:3, 2]) - 1.0) < 1e-9  # third axis: the unit normal


def test_localizers_and_repeated_positions_are_dropped_and_type2_filled(factory, tmp_path):
    s = factory.ct(n=10, shuffle_seed=None)
    extra = pydicom.dcmread(s.files[4])
    extra.SOPInstanceUID = pydicom.uid.generate_uid()  # a second image at the position of slice 4
    extra.save_as(s.folder / "dup", enforce_file_format=True)
    scout = pydicom.dcmread(s.files[0])
    scout.SOPInstanceUID = pydicom.uid.generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImagePositionPatient = [0, 0, -300]
    scout.save_as(s.folder / "scout", enforce_file_format=True)
    src = read_source_series(_only(s.folder))
    assert len(src.datasets) == 10
    assert scout.SOPInstanceUID not in {ds.SOPInstanceUID for ds in src.datasets}
    assert src.datasets[0].PatientName == "Doe^Jane"
    assert src.datasets[0].PatientSex == "" and src.datasets[0].StudyDate == ""  # absent type 2: empty


def test_enhanced_multiframe_source_keeps_its_frame_order(tmp_path):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("eCT_Supplemental.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data not installed")
    shutil.copy(path, tmp_path / "x.dcm")
    src = read_source_series(_only(tmp_path))
    assert src.multiframe and len(src.datasets) == 1 and len(src.frames) == 2
    assert [f.frame for f in src.frames] == [0, 1]  # a SEG lists a multi-frame source's frames in order
    np.testing.assert_allclose(src.frame_affine(1)[2, 3], src.frames[1].position[2])


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real CT DICOM not present at {REAL}")
def test_real_tilted_variable_spacing_series_keeps_every_slice():
    """GE: 18.5 degree tilt, 4 then 7 mm slices. read_series resamples it; the source keeps the 28 acquired
    planes as they are."""
    src = read_source_series(_only(REAL / "GE"))
    assert len(src.frames) == 28
    for k in (0, 13, 27):
        np.testing.assert_allclose(
            src.frame_affine(k) @ [100, 200, 0, 1], [*_lps_world(src.datasets[k], 100, 200), 1], atol=1e-4
        )


def test_scrub_phi_removes_identifiers(factory):
    s = factory.ct(n=10)
    src = read_source_series(_only(s.folder))
    ds = src.datasets[0]
    msg = f"bad {ds.PatientName} {ds.PatientID} {ds.AccessionNumber} in {ds.StudyInstanceUID} / 1.2.3.4.5.6"
    clean = scrub_phi(msg, src)
    for secret in (str(ds.PatientName), ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID, "1.2.3.4.5.6"):
        assert secret not in clean
    assert clean.startswith("bad <redacted>")
