"""discover + read_series on bad or non-CT input: Rejected / SkipScan / InvalidScan with clear reasons."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from fmct.io.dicom import discover, read_series
from fmct.io.errors import InvalidScan, SkipScan


def _only(folder):
    found = discover([folder])
    assert len(found.series) == 1, found
    return found.series[0]


def test_discover_mixed_tree(factory, tmp_path):
    root = tmp_path / "tree"
    a = factory.ct(n=12, folder=root / "p1" / "study" / "a")
    b = factory.ct(n=10, folder=root / "p1" / "study" / "a")  # two series in one folder
    c = factory.ct(n=11, folder=root / "deep" / "x" / "y" / "z")
    (root / "notes.txt").write_text("hello")
    (root / "scan.nii.gz").write_bytes(b"\x1f\x8b not really")
    (root / ".hidden").write_text("x")
    extra_file = factory.ct(n=10).files[0]  # a single file passed explicitly
    found = discover([root, extra_file])
    counts = sorted(s.n_files for s in found.series)
    assert counts == [1, 10, 11, 12]
    assert [r.path.name for r in found.rejected] == ["notes.txt"]
    assert "not a DICOM file" in found.rejected[0].reason
    by_n = {s.n_files: s for s in found.series}
    assert set(by_n[12].files) == set(a.files) and set(by_n[10].files) == set(b.files)
    assert set(by_n[11].files) == set(c.files)
    for s in found.series:
        assert s.scan_id.startswith("s-") and s.patient_id.startswith("p-") and s.study_id.startswith("t-")
        assert s.modality == "CT"
        assert s.series_uid not in repr(s)


def test_truncated_and_empty_files_rejected(factory, tmp_path):
    s = factory.ct(n=10)
    data = s.files[0].read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated_header").write_bytes(data[:200])
    (bad / "empty").write_bytes(b"")
    found = discover([bad])
    assert found.series == []
    assert {r.path.name for r in found.rejected} == {"truncated_header", "empty"}


def test_truncated_pixel_data_invalid(factory):
    s = factory.ct(n=12)
    data = s.files[3].read_bytes()
    s.files[3].write_bytes(data[: len(data) - 500])
    with pytest.raises(InvalidScan, match="(?i)truncated|pixel") as err:
        read_series(_only(s.folder))
    # the bad file is named, relative to the folder given to discover (no absolute path)
    assert err.value.reason.startswith(f"{s.folder.name}/{s.files[3].name}: pixel data truncated (")
    assert str(s.folder.parent) not in err.value.reason


def test_missing_pixel_data_invalid(factory):
    s = factory.ct(n=12)
    ds = pydicom.dcmread(s.files[2])
    del ds.PixelData
    ds.save_as(s.files[2], enforce_file_format=True)
    with pytest.raises(InvalidScan, match="without pixel data"):
        read_series(_only(s.folder))


def test_scout_skipped(factory):
    s = factory.ct(n=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    with pytest.raises(SkipScan, match="localizer"):
        read_series(_only(s.folder), min_slices=2)
    with pytest.raises(SkipScan, match="localizer"):
        read_series(_only(s.folder))


def test_localizer_mixed_into_series_dropped(factory):
    s = factory.ct(n=12)
    extra = factory.ct(n=1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), dz=1.0, origin=(0, 0, 7.3))
    ds = pydicom.dcmread(extra.files[0])
    ds.SeriesInstanceUID = s.series_uid
    ds.save_as(s.folder / "scout", enforce_file_format=True)
    vol = read_series(_only(s.folder))
    np.testing.assert_array_equal(vol.array, s.hu)
    assert any("localizer" in w for w in vol.meta["warnings"])


def test_mr_skipped(factory):
    s = factory.ct(n=12, modality="MR", sop="1.2.840.10008.5.1.4.1.1.4")
    with pytest.raises(SkipScan, match="modality MR"):
        read_series(_only(s.folder))


def test_dose_report_and_secondary_capture_skipped(factory):
    s = factory.ct(n=1, sop="1.2.840.10008.5.1.4.1.1.88.67", modality="SR")
    with pytest.raises(SkipScan, match="structured report"):
        read_series(_only(s.folder))
    s = factory.ct(n=1, sop="1.2.840.10008.5.1.4.1.1.7")
    with pytest.raises(SkipScan, match="secondary capture"):
        read_series(_only(s.folder))


def test_too_few_slices_skipped(factory):
    s = factory.ct(n=2)
    with pytest.raises(SkipScan, match="only 2 slice"):
        read_series(_only(s.folder))
    assert read_series(_only(s.folder), min_slices=2).shape == (32, 32, 2)


@pytest.mark.parametrize(
    ("row", "col", "word"),
    [((0, 1, 0), (0, 0, -1), "sagittal"), ((1, 0, 0), (0, 0, -1), "coronal")],
)
def test_reformats_skipped(factory, row, col, word):
    s = factory.ct(n=12, row_cos=row, col_cos=col)
    with pytest.raises(SkipScan, match=word):
        read_series(_only(s.folder))


def test_inconsistent_sizes_invalid(factory):
    s = factory.ct(n=12)
    other = factory.ct(n=1, rows=30, origin=(-12.0, -20.0, 30.0 + 12 * 2.5))
    ds = pydicom.dcmread(other.files[0])
    ds.SeriesInstanceUID = s.series_uid
    ds.save_as(s.folder / "odd_size", enforce_file_format=True)
    with pytest.raises(InvalidScan, match="inconsistent slice sizes"):
        read_series(_only(s.folder))


def test_nan_rescale_invalid(factory):
    s = factory.ct(n=12)
    ds = pydicom.dcmread(s.files[5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that NaN is not a valid DS
        ds.RescaleSlope = "NaN"
        ds.save_as(s.files[5], enforce_file_format=True)
    with pytest.raises(InvalidScan, match="(?i)not finite|nan"):
        read_series(_only(s.folder))


def test_two_stacks_in_one_series_invalid(factory):
    s = factory.ct(n=12)
    for k, f in enumerate(s.files[:6]):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = generate_uid()
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0] + 40.0, pos[1], pos[2] + 1.25]
        ds.save_as(s.folder / f"shifted{k}", enforce_file_format=True)
    with pytest.raises(InvalidScan, match="not on one line"):
        read_series(_only(s.folder))


def test_unexpected_error_wrapped_without_phi(factory):
    from pydicom.dataelem import DataElement

    s = factory.ct(n=12)
    ds = pydicom.dcmread(s.files[1])
    ds[0x00280010] = DataElement(0x00280010, "LO", "Doe^Jane")  # Rows with a wrong VR holding the name
    ds.save_as(s.files[1], enforce_file_format=True)
    with pytest.raises(InvalidScan, match="unreadable DICOM: ValueError") as info:
        read_series(_only(s.folder))
    assert "Doe" not in str(info.value)
