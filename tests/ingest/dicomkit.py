"""A small CT DICOM series for the ingest tests, written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ball_series(folder: Path, n: int = 14, size: int = 40, tilt_deg: float = 0.0) -> None:
    """``n`` axial slices of ``size``² at 1 mm (2 mm apart) holding a 15 mm ball of 40 HU in air; with
    ``tilt_deg`` the image plane is tilted about the left-right axis (a tilted gantry)."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    t = np.radians(tilt_deg)
    c = (np.arange(size) - size / 2.0) * 1.0
    rr, cc = np.meshgrid(c, c, indexing="ij")
    for k in range(n):
        z = (k - n / 2.0) * 2.0
        yy, zz = rr * np.cos(t), z - rr * np.sin(t)
        hu = np.where(cc**2 + yy**2 + zz**2 < 15.0**2, 40.0, -1000.0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"im{k:03d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P1", study, series
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(c[0]), float(c[0] * np.cos(t)), float(z - c[0] * np.sin(t))]
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(-np.sin(t))]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.clip(np.rint(hu + 1024), 0, 4095).astype("<u2").tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
