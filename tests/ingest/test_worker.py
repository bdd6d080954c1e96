"""An ingest worker's footprint: processing a series imports neither torch nor pandas (about 230 MB and
100 MB of RSS per worker), so a worker stays small (issue 27)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SRC = Path(__file__).resolve().parents[2] / "src"
_CHILD = """
import json, sys, tempfile
from pathlib import Path
from fmct.preprocess import PreprocessConfig
from fmct.ingest.plan import plan
from fmct.ingest.worker import process_item
items, _ = plan([Path(sys.argv[1])])
with tempfile.TemporaryDirectory() as store:
    rows = [process_item(it, store, PreprocessConfig().to_dict(), 10) for it in items]
heavy = [m for m in ("torch", "pandas", "pyarrow") if m in sys.modules]
print(json.dumps({"status": [r["status"] for r in rows], "heavy": heavy}))
"""


def _write_series(folder: Path, n: int = 14, size: int = 40, tilt_deg: float = 12.0) -> None:
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


def test_processing_a_tilted_series_imports_neither_torch_nor_pandas(tmp_path):
    _write_series(tmp_path / "series")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "series")], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["status"] == ["ok"]
    assert out["heavy"] == []
