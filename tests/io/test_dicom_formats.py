"""Multi-frame Enhanced CT, compressed transfer syntaxes, pydicom's test files, SimpleITK geometry."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from fmct.io.dicom import discover, read_series
from fmct.io.dicom_pixels import stored_pixels

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _only(folder):
    found = discover([folder])
    assert len(found.series) == 1, found
    return found.series[0]


def _item(**kw) -> Sequence:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return Sequence([ds])


def test_enhanced_multiframe_ct(tmp_path):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    n, rows, cols, dz = 12, 16, 24, 3.0
    z = np.arange(n) * dz
    hu = (3 * np.arange(cols)[:, None, None] + 5 * np.arange(rows)[None, :, None] + 4 * z - 500).astype(
        np.float32
    )
    order = np.random.default_rng(1).permutation(n)  # frames stored out of order
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", generate_uid(), generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelMeasuresSequence = _item(PixelSpacing=[0.5, 0.6], SliceThickness=3.0)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame, frames = [], []
    for idx, k in enumerate(order):
        slope, intercept = (1.0, -1024.0) if idx % 2 else (2.0, -1000.0)
        item = Dataset()
        item.PlanePositionSequence = _item(ImagePositionPatient=[-5.0, 7.0, 11.0 + z[k]])
        item.PixelValueTransformationSequence = _item(RescaleSlope=slope, RescaleIntercept=intercept)
        item.CTImageFrameTypeSequence = _item(FrameType=["ORIGINAL", "PRIMARY", "AXIAL"])
        per_frame.append(item)
        stored = np.rint((hu[:, :, k].T - intercept) / slope).astype(np.int16)
        hu[:, :, k] = stored.T * slope + intercept
        frames.append(stored)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).astype("<i2").tobytes()
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)

    vol = read_series(_only(tmp_path))
    assert vol.shape == (cols, rows, n)
    np.testing.assert_array_equal(vol.array, hu)
    expected = LPS_TO_RAS @ np.array([[0.6, 0, 0, -5.0], [0, 0.5, 0, 7.0], [0, 0, dz, 11.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected, atol=1e-6)
    assert vol.meta["sop_class"] == "Enhanced CT Image"


def test_pydicom_enhanced_ct_sample(tmp_path):
    src = get_testdata_file("eCT_Supplemental.dcm", download=False)
    if src is None:
        pytest.skip("pydicom-data not installed")
    shutil.copy(src, tmp_path / "x.dcm")
    ds = pydicom.dcmread(src)
    vol = read_series(_only(tmp_path), min_slices=2)
    assert vol.shape == (512, 512, 2)
    # orientation (-1,0,0 / 0,1,0): normal is -z (feet), so frame 1 (z=-149) comes first along it
    np.testing.assert_array_equal(vol.array[:, :, 0], ds.pixel_array[1].T.astype(np.float32) - 1024.0)
    np.testing.assert_array_equal(vol.array[:, :, 1], ds.pixel_array[0].T.astype(np.float32) - 1024.0)
    np.testing.assert_allclose(vol.affine[:3, 2], [0.0, 0.0, -10.0], atol=1e-6)
    assert vol.spacing == pytest.approx((0.388672, 0.388672, 10.0))


def _relabelled_series(src: str, folder, n: int = 10) -> None:
    """``n`` copies of a test file as an axial CT series (pixel data untouched, transfer syntax kept)."""
    folder.mkdir()
    uid = generate_uid()
    for k in range(n):
        ds = pydicom.dcmread(src)
        ds.Modality, ds.SOPClassUID = "CT", CT_IMAGE
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.0 * k]
        ds.PixelSpacing = [0.5, 0.5]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(folder / f"f{k}", enforce_file_format=True)


def test_compressed_twins_decode_to_same_hu(tmp_path):
    names = [
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ]
    arrays = {}
    for name in names:
        src = get_testdata_file(name, download=False)
        assert src is not None, name
        _relabelled_series(src, tmp_path / name)
        arrays[name] = read_series(_only(tmp_path / name)).array
    ref = arrays["MR_small.dcm"]
    assert ref.shape == (64, 64, 10) and float(ref.std()) > 0
    for name, arr in arrays.items():
        np.testing.assert_array_equal(arr, ref, err_msg=name)


def test_ct_small_and_jpeg_lossless_decode(tmp_path):
    src = get_testdata_file("CT_small.dcm", download=False)
    _relabelled_series(src, tmp_path / "ct")
    ds = pydicom.dcmread(src)
    vol = read_series(_only(tmp_path / "ct"))
    np.testing.assert_array_equal(vol.array[:, :, 3], ds.pixel_array.T.astype(np.float32) - 1024.0)
    p14 = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm", download=False)
    if p14 is not None:  # JPEG lossless process 14 (pydicom-data); 8-bit stored values
        _relabelled_series(p14, tmp_path / "p14")
        vol = read_series(_only(tmp_path / "p14"))
        expected = pydicom.dcmread(p14).pixel_array.T.astype(np.float32) - 1024.0
        np.testing.assert_array_equal(vol.array[:, :, 0], expected)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_synthetic_series(factory, syntax):
    s = factory.ct(n=10, rescale=[(1.0, -1024.0), (2.0, -1000.0)])
    for f in s.files:
        ds = pydicom.dcmread(f)
        ds.compress(syntax)
        ds.save_as(f, enforce_file_format=True)
    vol = read_series(_only(s.folder))
    np.testing.assert_allclose(vol.array, s.hu, atol=0.5)
    assert vol.meta["transfer_syntax"] == syntax.name


def test_fast_path_matches_pydicom(factory):
    s = factory.ct(n=10, big_endian=True)
    for f in s.files[:3]:
        ds = pydicom.dcmread(f)
        np.testing.assert_array_equal(stored_pixels(ds, None, 32, 32, {}), ds.pixel_array)
    ds = pydicom.dcmread(s.files[0])  # 12 bits stored, signed: sign-extended like pydicom does
    ds.BitsStored, ds.HighBit = 12, 11
    fast = stored_pixels(ds, None, 32, 32, {})
    np.testing.assert_array_equal(fast, ds.pixel_array)


@pytest.mark.parametrize("kind", ["plain", "tilt_free_oblique"])
def test_geometry_matches_simpleitk(factory, kind):
    import SimpleITK as sitk

    if kind == "plain":
        s = factory.ct(n=15, shuffle_seed=7, origin=(3.0, -4.0, 50.0))
    else:
        a = np.radians(10)
        s = factory.ct(
            n=15, row_cos=(np.cos(a), np.sin(a), 0.0), col_cos=(-np.sin(a), np.cos(a), 0.0), dz=1.25
        )
    vol = read_series(_only(s.folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(s.folder)))
    img = reader.Execute()
    flip = np.diag([-1.0, -1.0, 1.0])
    direction = flip @ np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.origin, flip @ np.array(img.GetOrigin()), atol=1e-4)
    np.testing.assert_allclose(vol.direction, direction, atol=1e-5)
    itk_hu = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    np.testing.assert_allclose(vol.array, itk_hu, atol=1e-3)
