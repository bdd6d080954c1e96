"""The saliency SEG: fractional segments on the source series' own planes, filed with its study."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, SegmentationStorage

from fmct.infer.dicom_content import ModelFacts
from fmct.infer.dicom_out import save_dataset
from fmct.infer.dicom_seg import map_on_frames, saliency_seg
from fmct.io.dicom_source import read_source_series, series_by_scan_id

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "dcm_qa_ct"


def _source(folder):
    (ref,) = series_by_scan_id([folder]).values()
    return read_source_series(ref)


def _pixel_world(ds, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """RAS mm of pixels (col, row) of a single-frame image, from its header alone."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)
    lps = ipp + np.multiply.outer(col * dc, iop[:3]) + np.multiply.outer(row * dr, iop[3:])
    return lps * np.array([-1.0, -1.0, 1.0])


def _linear_map(src, coef=(0.002, -0.001, 0.003)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(map, affine, centre)``: ``0.5 + coef . (world - centre)`` on a 4 mm grid covering the series
    (trilinear interpolation reproduces it exactly)."""
    corners = []
    for k, f in enumerate(src.frames):
        for c, r in ((0, 0), (f.cols - 1, 0), (0, f.rows - 1), (f.cols - 1, f.rows - 1)):
            corners.append((src.frame_affine(k) @ [c, r, 0, 1])[:3])
    lo, hi = np.min(corners, 0) - 8, np.max(corners, 0) + 8
    shape = tuple(int(n) for n in np.ceil((hi - lo) / 4.0) + 1)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = lo
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = idx * 4.0 + lo
    centre = (lo + hi) / 2
    return (0.5 + (world - centre) @ np.asarray(coef)).astype(np.float32), affine, centre


@pytest.mark.parametrize("which", ["synthetic", "real_tilted"])
def test_maps_are_sampled_on_each_source_plane(which, dicom_series):
    """A map linear in world mm comes back exactly on every source pixel, wherever its header puts it (the
    GE series: 18.5 degree tilt, slices 4 then 7 mm apart)."""
    if which == "real_tilted" and not REAL.is_dir():
        pytest.skip(f"real CT DICOM not present at {REAL}")
    src = _source(dicom_series if which == "synthetic" else REAL / "GE")
    heat, affine, centre = _linear_map(src)
    frames = map_on_frames(src, heat, affine)
    assert frames.shape == (len(src.frames), src.frames[0].rows, src.frames[0].cols)
    rows, cols = src.frames[0].rows, src.frames[0].cols
    for k in (0, len(src.frames) // 2, len(src.frames) - 1):
        col, row = np.meshgrid(np.arange(cols), np.arange(rows))
        expected = 0.5 + (_pixel_world(src.datasets[k], col, row) - centre) @ np.array([0.002, -0.001, 0.003])
        np.testing.assert_allclose(frames[k], expected, atol=1e-4)


@pytest.fixture(scope="module")
def written(dicom_series, classifier, tmp_path_factory):
    src = _source(dicom_series)
    heat, affine, centre = _linear_map(src)
    blob = np.zeros_like(heat)
    blob[4:9, 5:12, 3:7] = 1.0  # a box the segment must hold where it lies
    maps = {"ich": ("grad_rollout", np.clip(heat, 0, 1), affine), "sdh": ("attention", blob, affine)}
    seg = saliency_seg(src, maps, ModelFacts.of(classifier))
    return save_dataset(seg, tmp_path_factory.mktemp("seg") / "seg.dcm"), src, maps


def test_seg_is_fractional_with_one_segment_per_map(written, classifier):
    path, _, _ = written
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SegmentationStorage and ds.Modality == "SEG"
    assert ds.SegmentationType == "FRACTIONAL" and ds.SegmentationFractionalType == "PROBABILITY"
    assert ds.MaximumFractionalValue == 255 and ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    labels = [s.SegmentLabel for s in ds.SegmentSequence]
    assert labels == ["ich saliency (grad_rollout)", "sdh saliency (attention)"]
    ich, sdh = ds.SegmentSequence
    assert ich.SegmentedPropertyTypeCodeSequence[0].CodeValue == "1386000"
    assert sdh.SegmentedPropertyTypeCodeSequence[0].CodeValue == "sdh"
    assert ich.SegmentAlgorithmType == "AUTOMATIC" and ich.SegmentAlgorithmName == "tiny-test"
    assert "NOT FOR CLINICAL USE" in ds.SeriesDescription and ds.ContentQualification == "RESEARCH"


def test_seg_frames_match_the_source_geometry_and_values(written, dicom_series, patient_study):
    path, src, maps = written
    ds = pydicom.dcmread(path)
    source = {s.SOPInstanceUID: s for s in src.datasets}
    first = src.datasets[0]
    assert ds.StudyInstanceUID == first.StudyInstanceUID and ds.SeriesInstanceUID != first.SeriesInstanceUID
    assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    for keyword, value in patient_study.items():
        assert str(ds.get(keyword)) == value, keyword
    (ref_series,) = ds.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref_series.ReferencedInstanceSequence} <= set(source)
    assert (ds.Rows, ds.Columns) == (first.Rows, first.Columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == pytest.approx(
        [float(v) for v in first.PixelSpacing]
    )
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == pytest.approx(
        [float(v) for v in first.ImageOrientationPatient], abs=1e-6
    )
    expected = {f: map_on_frames(src, heat, affine) for f, (_, heat, affine) in maps.items()}
    index = {s.SOPInstanceUID: k for k, s in enumerate(src.datasets)}
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    seen = {"ich": 0, "sdh": 0}
    for frame, item in zip(pixels, ds.PerFrameFunctionalGroupsSequence, strict=True):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert ipp == pytest.approx([float(v) for v in source[uid].ImagePositionPatient], abs=1e-4)
        segment = ["ich", "sdh"][item.SegmentIdentificationSequence[0].ReferencedSegmentNumber - 1]
        np.testing.assert_allclose(
            frame / 255.0, np.clip(expected[segment][index[uid]], 0, 1), atol=0.6 / 255
        )
        seen[segment] += 1
    assert seen["ich"] == len(src.frames)  # never zero: every frame
    assert 0 < seen["sdh"] < len(src.frames)  # the box: frames where every segment is zero are omitted


def test_seg_passes_dciodvfy(written, dciodvfy):
    path, _, _ = written
    assert dciodvfy(path) == []


def test_seg_needs_a_nonzero_map(dicom_series, classifier):
    src = _source(dicom_series)
    facts = ModelFacts.of(classifier)
    with pytest.raises(ValueError, match="no saliency map"):
        saliency_seg(src, {}, facts)
    with pytest.raises(ValueError, match="zero on every source image"):
        saliency_seg(src, {"ich": ("attention", np.zeros((4, 4, 4), np.float32), np.eye(4))}, facts)


@pytest.mark.parametrize("series", ["GE", "Philips/S21610/S3010"])
def test_real_series_objects_add_no_validation_error(series, classifier, dciodvfy, tmp_path):
    """On real scanner headers (tilted; GE: 4 then 7 mm slices, de-identified with an empty
    DeidentificationMethod) the SR and SEG pass dciodvfy but for what they copy from the source."""
    from fmct.infer.dicom_sr import findings_sr

    if not REAL.is_dir():
        pytest.skip(f"real CT DICOM not present at {REAL}")
    src = _source(REAL / series)
    heat, affine, _ = _linear_map(src)
    facts = ModelFacts.of(classifier)
    seg = save_dataset(
        saliency_seg(src, {"ich": ("grad_rollout", heat.clip(0, 1), affine)}, facts), tmp_path / "s"
    )
    sr = save_dataset(findings_sr(src, {"ich": 0.9}, facts), tmp_path / "r")
    source_errors = set(dciodvfy(src.datasets[0].filename))
    assert set(dciodvfy(seg)) <= source_errors and set(dciodvfy(sr)) <= source_errors
    assert int(pydicom.dcmread(seg).NumberOfFrames) == len(src.frames)
