"""Ingest real DICOM files (written with pydicom): geometry end to end, ids, a scout that is skipped."""

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from fmct.ingest import run_ingest as ingest
from fmct.store import ScanStore

MARKER_LPS = np.array([6.0, -8.0, 4.0])  # patient (LPS) mm


def _series(
    folder: Path,
    n: int,
    size=48,
    px=0.9,
    dz=2.0,
    image_type="AXIAL",
    patient="SECRET-PID-123",
    rescale=True,
    number=None,
    description=None,
    prefix="im",
):
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    c = (np.arange(size) - size / 2.0) * px
    yy, xx = np.meshgrid(c, c, indexing="ij")
    order = np.random.default_rng(0).permutation(n)  # instance numbers unrelated to positions
    for k in range(n):
        z = (k - n / 2.0) * dz
        hu = np.where(xx**2 + yy**2 + z**2 < 18.0**2, 40.0, -1000.0)
        d2 = (xx - MARKER_LPS[0]) ** 2 + (yy - MARKER_LPS[1]) ** 2 + (z - MARKER_LPS[2]) ** 2
        hu = hu + 1500.0 * np.exp(-d2 / (2 * 3.0**2))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{prefix}{order[k]:03d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
        ds.PatientID, ds.PatientName = patient, "Doe^Jane"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.ImageType = ["ORIGINAL", "PRIMARY", image_type]
        ds.InstanceNumber = int(order[k]) + 1
        if number is not None:
            ds.SeriesNumber = number
        if description is not None:
            ds.SeriesDescription = description
        ds.ImagePositionPatient = [float(c[0]), float(c[0]), float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [px, px], dz
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if rescale:
            ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0
            ds.PixelData = np.rint(hu).astype(np.int16).tobytes()
        else:  # stored values 0 … 4095 as scanners write them, but the intercept of -1024 is lost
            ds.PixelData = np.rint(hu + 1024.0).astype(np.int16).tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
    return study, series


def test_dicom_series_end_to_end(tmp_path):
    uids = _series(tmp_path / "in" / "patient1" / "axial", 24)
    _series(tmp_path / "in" / "patient1" / "scout", 2, image_type="LOCALIZER")
    out = tmp_path / "store"
    summary = ingest([tmp_path / "in"], out)
    assert (summary.ok, summary.skipped, summary.failed) == (1, 1, 0)
    store = ScanStore(out)
    df = store.manifest
    ok = df[df.status == "ok"].iloc[0]
    assert ok.kind == "dicom" and ok.n_files == 24 and ok.source.endswith("axial")
    assert ok.scan_id.startswith("s-") and ok.patient_id.startswith("p-") and ok.study_id.startswith("t-")
    assert list(ok.source_spacing_mm) == [0.9, 0.9, 2.0]
    skipped = df[df.status == "skipped"].iloc[0]
    assert "localizer" in skipped.reason.lower()
    vol = store.load(ok.scan_id)
    a = vol.array.astype(np.float64)
    w = np.clip(a - 500.0, 0.0, None)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in a.shape], indexing="ij"), -1)
    centroid = (vol.affine @ np.r_[(idx * w[..., None]).reshape(-1, 3).sum(0) / w.sum(), 1.0])[:3]
    ras = MARKER_LPS * [-1.0, -1.0, 1.0]
    assert np.linalg.norm(centroid - ras) < 1.0, (centroid, ras)
    # no PHI in the store
    for p in out.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".parquet"):
            text = p.read_bytes()
            assert b"SECRET-PID-123" not in text and b"Doe^Jane" not in text
            assert not any(uid.encode() in text for uid in uids)


def test_manifest_says_what_was_repaired_and_refuses_unrescaled_series(tmp_path):
    _series(tmp_path / "in" / "clean", 24)
    _series(tmp_path / "in" / "gap", 24)
    by_z = sorted(
        (tmp_path / "in" / "gap").iterdir(), key=lambda p: pydicom.dcmread(p).ImagePositionPatient[2]
    )
    by_z[10].unlink()  # one slice lost in the middle of the stack
    _series(tmp_path / "in" / "raw", 24, rescale=False)
    summary = ingest([tmp_path / "in"], tmp_path / "store")
    assert (summary.ok, summary.failed, summary.warned) == (2, 1, 1)
    assert summary.line().startswith("ingested 2 ok (1 with warnings: see the manifest), 0 skipped, 1 failed")
    rows = {Path(r.source).name: r for r in ScanStore(tmp_path / "store").manifest.itertuples()}
    assert rows["clean"].status == "ok" and rows["clean"].warnings == ""
    assert rows["gap"].status == "ok" and "filled 1 missing slice" in rows["gap"].warnings
    assert rows["raw"].status == "failed" and "not look like HU" in rows["raw"].reason
    assert rows["raw"].warnings == ""


def test_series_without_preamble_is_ingested(tmp_path):
    """Files written without the 128-byte preamble (File Meta kept) are one ok series, not 24 rejects."""
    _series(tmp_path / "in" / "nopreamble", 24)
    for f in (tmp_path / "in" / "nopreamble").iterdir():
        f.write_bytes(f.read_bytes()[132:])  # no preamble, no DICM: starts with the (0002,0000) element
    summary = ingest([tmp_path / "in"], tmp_path / "store")
    assert (summary.ok, summary.skipped, summary.failed) == (1, 0, 0), summary.rows
    row = ScanStore(tmp_path / "store").manifest.iloc[0]
    assert row.status == "ok" and row.n_files == 24 and list(row.source_spacing_mm) == [0.9, 0.9, 2.0]


def test_truncated_pixel_data_names_the_file(tmp_path):
    """The manifest reason names the truncated file, relative to the input root."""
    _series(tmp_path / "in" / "patient1" / "axial", 24)
    victim = sorted((tmp_path / "in" / "patient1" / "axial").iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:-2000])
    summary = ingest([tmp_path / "in"], tmp_path / "store")
    assert (summary.ok, summary.failed) == (0, 1)
    reason = ScanStore(tmp_path / "store").manifest.iloc[0].reason
    assert reason.startswith(f"in/patient1/axial/{victim.name}: pixel data truncated ("), reason
    assert str(tmp_path) not in reason


def _dicomdir(path: Path) -> None:
    """A minimal DICOMDIR (Media Storage Directory; its records are not needed to be one)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.FileSetID = "EXPORT"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_series_sharing_a_folder_are_told_apart_and_dicomdir_gets_a_row(tmp_path):
    flat = tmp_path / "in" / "export"
    _series(flat, 24, number=3, description="HEAD 2mm DOE JANE MRN4471", prefix="a")
    _series(flat, 20, number=7, description="BONE 2mm", prefix="b")
    _dicomdir(tmp_path / "in" / "DICOMDIR")
    ingest([tmp_path / "in"], tmp_path / "store")
    df = ScanStore(tmp_path / "store").manifest
    assert len(df) == 3, df
    index = df[df.kind == "file"].iloc[0]
    assert index.status == "skipped" and index.reason.startswith("DICOMDIR index, not an image")
    series = df[df.kind == "dicom"].set_index("series_number")
    assert (
        sorted(series.index) == [3, 7] and series.loc[3, "n_files"] == 24 and series.loc[7, "n_files"] == 20
    )
    assert series.source.nunique() == 1  # one folder: the series number and file count tell them apart
    assert series.series_description.isna().all()  # free text: only on request
    # on request, cleaned of the header's identifying words (Doe^Jane) and digit runs (the MRN)
    ingest([tmp_path / "in"], tmp_path / "store2", series_description=True)
    desc = ScanStore(tmp_path / "store2").manifest.set_index("series_number").series_description
    assert desc[3] == "HEAD 2mm * * *" and desc[7] == "BONE 2mm"
