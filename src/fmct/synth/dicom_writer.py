"""Write a synthetic scan as a DICOM CT Image Storage series (one file per slice), deterministically.

Everything written is derived from ``(site, seed, index)``: UIDs come from ``pydicom.uid.generate_uid``
with fixed entropy sources, dates and times are fixed, names are clearly fake (``SYNTHETIC^PATIENT``).
The series is written to a temporary folder next to the target, then moved into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
FIXED_DATE = "20000101"
FIXED_TIME = "120000"


def det_uid(*parts: object) -> str:
    """A deterministic UUID-derived UID (``2.25.<128-bit int>``) from the hash of ``parts``."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in ("fmct-synth", *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def synth_uids(site: str, seed: int, index: int) -> dict[str, str]:
    """Deterministic Study/Series/FrameOfReference UIDs of one synthetic scan."""
    base = (str(site), int(seed), int(index))
    return {
        "study": det_uid(*base, "study"),
        "series": det_uid(*base, "series"),
        "frame": det_uid(*base, "frame"),
    }


def synth_patient_id(site: str, seed: int, index: int) -> str:
    """The (fake) DICOM PatientID of one synthetic scan, unique per (site, seed, index)."""
    return f"SYN-{site}-{int(seed)}-{int(index):05d}"


def _fmt(v: float) -> str:
    """A DICOM DS string (<= 16 chars) with stable formatting."""
    s = f"{float(v):.6g}"
    return "0" if s in ("-0", "-0.0") else s


def write_dicom_series(scan, out_dir: Path, site_obj, seed: int, index: int) -> list[Path]:
    """Write ``scan`` (:class:`~fmct.synth.scan.SynthScan`) as ``out_dir/<nnnn>.dcm`` files.

    Tags: CT Image Storage, ImagePositionPatient / ImageOrientationPatient (LPS, with gantry tilt),
    PixelSpacing, SliceThickness, SpacingBetweenSlices, GantryDetectorTilt, RescaleIntercept/Slope, vendor
    tags (Manufacturer, ManufacturerModelName, ConvolutionKernel, KVP), fake patient/study identity.
    Returns the file paths in slice order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    geom = scan.geometry
    site = site_obj.name
    uids = synth_uids(site, seed, index)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    n = geom.n_slices
    stored = scan.stored
    iop = [_fmt(v) for v in list(geom.row_lps) + list(geom.col_lps)]
    paths = []
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "2.25.314159265358979323846264338327950288"
    meta.ImplementationVersionName = "FMCT_SYNTH_1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = "1.2"  # set per slice below (keeps the tag order fixed)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = FIXED_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = FIXED_TIME
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = site_obj.manufacturer
    ds.InstitutionName = "SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC HEAD CT"
    ds.SeriesDescription = f"HEAD {geom.thickness_mm:.2f}mm {site_obj.convolution_kernel}"
    ds.ManufacturerModelName = site_obj.model
    ds.PatientName = "SYNTHETIC^PATIENT"
    ds.PatientID = synth_patient_id(site, seed, index)
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = _fmt(geom.thickness_mm)
    ds.KVP = _fmt(site_obj.kvp)
    ds.SpacingBetweenSlices = _fmt(geom.spacing_mm)
    ds.GantryDetectorTilt = _fmt(geom.tilt_deg)
    ds.ConvolutionKernel = site_obj.convolution_kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [_fmt(v) for v in geom.position_lps(0)]
    ds.ImageOrientationPatient = iop
    ds.FrameOfReferenceUID = uids["frame"]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = "0"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = geom.size
    ds.Columns = geom.size
    ds.PixelSpacing = [_fmt(geom.pixel_mm), _fmt(geom.pixel_mm)]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if site_obj.pixel_signed else 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    ds.RescaleIntercept = _fmt(site_obj.rescale_intercept)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.PixelData = b""
    dtype = "<i2" if site_obj.pixel_signed else "<u2"
    for k in range(n):
        # only the per-slice tags change; the same dataset is saved once per slice
        sop = det_uid(site, int(seed), int(index), "sop", k)
        meta.MediaStorageSOPInstanceUID = sop
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = k + 1 if site_obj.instance_order == "ascending" else n - k
        pos = geom.position_lps(k)
        ds.ImagePositionPatient = [_fmt(v) for v in pos]
        ds.SliceLocation = _fmt(float(np.dot(pos, geom.normal_lps)))
        # stored is (column, row, slice); DICOM pixel data is row-major (row, column)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype(dtype).tobytes()
        path = tmp / f"{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(out_dir / path.name)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return paths
