"""``fmct ingest`` shows the progress of discovery's header reading (files read / files found), as lines
when its output is a log."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from fmct.ingest import run_ingest
from fmct.ingest.discovery_progress import discovery_progress


def _series(folder: Path, n: int, size: int = 40) -> None:
    """An axial CT series of ``n`` slices holding a 15 mm ball of 40 HU in air."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    c = np.arange(size) - size / 2.0
    yy, xx = np.meshgrid(c, c, indexing="ij")
    for k in range(n):
        z = (k - n / 2.0) * 2.0
        hu = np.where(xx**2 + yy**2 + z**2 < 15.0**2, 40.0, -1000.0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"im{k:03d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P1", study, series
        ds.ImagePositionPatient = [float(c[0]), float(c[0]), z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.Rows, ds.Columns = [1.0, 1.0], size, size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.rint(hu + 1024).astype("<u2").tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)


def test_discovery_progress_writes_lines_to_a_log():
    out = io.StringIO()
    with discovery_progress(True, stream=out, every_s=0.0) as update:
        for done in (64, 128, 150):
            update(done, 150)
    lines = out.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == [
        "discover 64/150 (43 %) files",
        "discover 128/150 (85 %) files",
        "discover 150/150 (100 %) files",
    ]
    with discovery_progress(False) as update:
        assert update is None


def test_ingest_reports_the_files_discovery_read(tmp_path, capsys):
    _series(tmp_path / "in" / "a", n=14)
    (tmp_path / "in" / "readme.txt").write_text("not DICOM")
    summary = run_ingest([tmp_path / "in"], tmp_path / "store", progress=True)
    assert summary.ok == 1
    printed = capsys.readouterr().out
    assert "discover 15/15 (100 %) files" in printed
    assert printed.index("discover 15/15") < printed.index("ingest 1/1")
