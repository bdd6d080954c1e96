"""RSNA and CQ500 label importers, with tiny DICOMs written by pydicom for the header mapping."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from fmct.io.ids import patient_id_from_dicom, scan_id_from_series_uid
from fmct.labels.importers import LabelImportError, import_cq500, import_rsna, write_labels

# real RSNA files use "ID_<hex>" as SOPInstanceUID, which is not a valid UI value
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")


def write_dicom(path: Path, sop: str, series: str, patient: str, z: float) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.SeriesInstanceUID = series
    ds.StudyInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.Modality = "CT"
    ds.ImagePositionPatient = [0, 0, z]
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_rsna_aggregates_slices_to_series(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s1, s2 = generate_uid(), generate_uid()
    files = {"ID_a1": (s1, "PAT1"), "ID_a2": (s1, "PAT1"), "ID_b1": (s2, "PAT2"), "ID_b2": (s2, "PAT2")}
    for i, (sop, (ser, pat)) in enumerate(files.items()):
        write_dicom(tmp_path / "dcm" / f"{sop}.dcm", sop, ser, pat, float(i))
    rows = []
    positives = {("ID_a2", "subdural"), ("ID_a2", "any"), ("ID_b1", "epidural")}  # b1: any missing -> OR
    for sop in files:
        for sub in ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"):
            rows.append((f"{sop}_{sub}", int((sop, sub) in positives)))
    rows.append(("ID_zz_any", 1))  # an image we do not have
    pd.DataFrame(rows, columns=["ID", "Label"]).to_csv(tmp_path / "stage_2_train.csv", index=False)
    df = import_rsna(tmp_path / "stage_2_train.csv", tmp_path / "dcm").set_index("scan_id")
    a, b = df.loc[scan_id_from_series_uid(s1)], df.loc[scan_id_from_series_uid(s2)]
    assert a["sdh"] == 1 and a["ich"] == 1 and a["edh"] == 0 and a["n_slices"] == 2
    assert b["edh"] == 1 and b["ich"] == 1 and b["sdh"] == 0
    assert a["patient_id"] == patient_id_from_dicom("PAT1", fallback="x")
    out = write_labels(df.reset_index(), tmp_path / "labels.csv")
    text = out.read_text()
    assert "PAT1" not in text and "ID_a1" not in text  # no raw ids in the output
    assert list(pd.read_csv(out).columns[:3]) == ["scan_id", "patient_id", "study_id"]


def test_rsna_bad_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(LabelImportError, match="x.csv"):
        import_rsna(tmp_path / "x.csv", tmp_path)


def _reads(tmp_path: Path) -> Path:
    cols = ["name", "Category"]
    for r in (1, 2, 3):
        cols += [
            f"R{r}:{f}"
            for f in ("ICH", "IPH", "SDH", "Fracture", "MassEffect", "MidlineShift", "BleedLocation-Left")
        ]
    votes = {
        "CQ500-CT-0": [(1, 1, 0, 0, 0, 0, 1), (1, 0, 0, 0, 1, 0, 1), (0, 0, 0, 1, 1, 0, 0)],
        "CQ500-CT-1": [(0,) * 7, (0,) * 7, (1, 0, 1, 0, 0, 0, 0)],
    }
    rows = [[name, "B1"] + [v for reader in rs for v in reader] for name, rs in votes.items()]
    path = tmp_path / "reads.csv"
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return path


def test_cq500_majority_vote_without_dicom(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = import_cq500(_reads(tmp_path)).set_index("scan_id")
    r0, r1 = df.loc["CQ500-CT-0"], df.loc["CQ500-CT-1"]
    assert (r0["ich"], r0["iph"], r0["mass"], r0["fracture"]) == (1, 0, 1, 0)
    assert (r1["ich"], r1["sdh"]) == (0, 0)
    assert (r0["r1_iph"], r0["r2_iph"], r0["r3_mass"]) == (1, 0, 1)
    assert r0["n_readers"] == 3 and "midline_shift" in df


def test_cq500_maps_names_through_dicom(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s_a, s_b, s_c = generate_uid(), generate_uid(), generate_uid()
    write_dicom(tmp_path / "d" / "0a" / "1.dcm", generate_uid(), s_a, "CQ500-CT-0", 0)
    write_dicom(tmp_path / "d" / "0b" / "1.dcm", generate_uid(), s_b, "CQ500-CT-0", 0)  # second series
    write_dicom(tmp_path / "d" / "1" / "1.dcm", generate_uid(), s_c, "CQ500-CT-1", 0)
    df = import_cq500(_reads(tmp_path), tmp_path / "d").set_index("scan_id")
    assert len(df) == 3
    assert df.loc[scan_id_from_series_uid(s_a), "ich"] == 1 == df.loc[scan_id_from_series_uid(s_b), "ich"]
    assert df.loc[scan_id_from_series_uid(s_c), "ich"] == 0
    assert (
        df.loc[scan_id_from_series_uid(s_a), "patient_id"]
        == df.loc[scan_id_from_series_uid(s_b), "patient_id"]
    )
    assert not any("CQ500" in str(v) for v in df.reset_index().to_numpy().ravel())
