"""generate_cohort / fmct synth: DICOM tags and geometry, round trip, NIfTI, ids, determinism, CLI."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from typer.testing import CliRunner

from fmct.cli import app
from fmct.io.ids import patient_id_from_dicom, scan_id_from_nifti, scan_id_from_series_uid
from fmct.labels import FINDINGS
from fmct.synth import LABEL_COLUMNS, MASK_VALUES, generate_cohort, synth_scan
from fmct.synth.cohort import scan_ids


def _rows(labels: Path) -> list[dict]:
    with open(labels, newline="") as fh:
        return list(csv.DictReader(fh))


def _read_series_minimal(folder: Path):
    """A minimal reader: sort by position along the slice normal, rescale, build the RAS affine."""
    dss = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    arr = np.stack(
        [d.pixel_array.T.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss],
        axis=-1,
    )
    pos = np.array([d.ImagePositionPatient for d in dss], dtype=float)
    ps = [float(v) for v in dss[0].PixelSpacing]
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * ps[1]
    aff[:3, 1] = iop[3:] * ps[0]
    aff[:3, 2] = (pos[-1] - pos[0]) / (len(dss) - 1)
    aff[:3, 3] = pos[0]
    return dss, arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff, pos, normal


def test_dicom_tags_geometry_and_round_trip(dicom_cohort, rich):
    out, labels = dicom_cohort
    rows = _rows(labels)
    assert list(rows[0]) == LABEL_COLUMNS and len(rows) == 3
    for index, row in enumerate(rows):
        folder = out / "dicom" / row["scan_id"]
        dss, arr, aff, pos, normal = _read_series_minimal(folder)
        d0 = dss[0]
        assert d0.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and d0.Modality == "CT"
        assert str(d0.PatientName) == "SYNTHETIC^PATIENT" and d0.Manufacturer.startswith("SYNTHETIC")
        assert float(d0.RescaleIntercept) == 0.0 and d0.PixelRepresentation == 1  # site c encoding
        assert 12 <= float(d0.GantryDetectorTilt) <= 20
        # ids join with ingest
        assert scan_id_from_series_uid(d0.SeriesInstanceUID) == row["scan_id"]
        assert patient_id_from_dicom(d0.PatientID, fallback=row["scan_id"]) == row["patient_id"]
        assert len({d.SeriesInstanceUID for d in dss}) == 1 and len({d.SOPInstanceUID for d in dss}) == len(
            dss
        )
        # positions equally spaced along the normal; spacing = SpacingBetweenSlices
        along = pos @ normal
        np.testing.assert_allclose(np.diff(along), float(d0.SpacingBetweenSlices), atol=1e-3)
        # the generated scan, re-read from disk, is identical (HU and geometry)
        s = synth_scan(
            index,
            "c",
            5,
            size=32,
            prevalence=rich,
        )
        np.testing.assert_array_equal(arr, s.volume.array)
        np.testing.assert_allclose(aff, s.volume.affine, atol=1e-3)
        # masks on the same grid, labelled like labels.csv
        m = nib.load(out / "masks" / f"{row['scan_id']}.nii.gz")
        np.testing.assert_allclose(m.affine, s.volume.affine, atol=1e-4)
        data = np.asarray(m.dataobj)
        for f in FINDINGS[1:]:
            assert bool((data == MASK_VALUES[f]).any()) == (row[f] == "1")
        for f in FINDINGS:
            assert (float(row[f"{f}_size"]) > 0) == (row[f] == "1")
        assert (out / "preview" / f"{row['scan_id']}.png").stat().st_size > 1000


def test_io_reader_reads_synth_series(dicom_cohort, rich):
    from fmct.io import dicom

    out, labels = dicom_cohort
    rows = {r["scan_id"]: r for r in _rows(labels)}
    res = dicom.discover([out / "dicom"])
    assert not res.rejected and {s.scan_id for s in res.series} == set(rows)
    for ref in res.series:
        assert rows[ref.scan_id]["patient_id"] == ref.patient_id
        vol = dicom.read_series(ref)
        index = list(rows).index(ref.scan_id)
        s = synth_scan(
            index,
            "c",
            5,
            size=32,
            prevalence=rich,
        )
        np.testing.assert_allclose(vol.affine, s.volume.affine, atol=1e-3)
        np.testing.assert_array_equal(vol.array, s.volume.array)


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_same_bytes_whatever_the_workers(tmp_path):
    kw = dict(fmt="nifti", masks=True, preview=True, size=24, progress=False)
    generate_cohort(tmp_path / "one", 2, "b", 3, workers=1, **kw)
    generate_cohort(tmp_path / "two", 2, "b", 3, workers=2, **kw)
    one, two = _digest_tree(tmp_path / "one"), _digest_tree(tmp_path / "two")
    assert one == two and len(one) == 7  # 2 nifti + 2 masks + 2 previews + labels.csv


def test_nifti_output_affine_ids_and_merge(tmp_path):
    labels = generate_cohort(tmp_path, 2, "a", 1, fmt="nifti", size=24, progress=False)
    rows = _rows(labels)
    for index, row in enumerate(rows):
        path = tmp_path / "nifti" / f"{row['scan_id']}.nii.gz"
        assert scan_id_from_nifti(path) == row["scan_id"]
        assert (row["scan_id"], row["patient_id"]) == scan_ids("a", 1, index)
        img = nib.load(path)
        s = synth_scan(index, "a", 1, size=24, fmt="nifti")
        np.testing.assert_allclose(img.affine, s.volume.affine, atol=1e-4)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        np.testing.assert_array_equal(np.asarray(img.dataobj), s.volume.array.astype(np.int16))
    # a second site into the same folder merges labels.csv; regenerating a scan replaces its row
    generate_cohort(tmp_path, 1, "b", 1, fmt="nifti", size=24, progress=False)
    generate_cohort(tmp_path, 1, "a", 1, fmt="nifti", size=24, progress=False)
    merged = _rows(labels)
    assert len(merged) == 3 and sorted(r["site"] for r in merged) == ["a", "a", "b"]
    assert len({r["scan_id"] for r in merged}) == 3


def test_cli(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["synth", str(tmp_path / "x"), "--n", "1", "--site", "q", "--seed", "0"])
    assert res.exit_code == 2 and "unknown site" in res.output
    res = runner.invoke(app, ["synth", str(tmp_path / "x"), "--n", "1", "--site", "a", "--format", "png"])
    assert res.exit_code == 2 and "--format" in res.output
    res = runner.invoke(
        app,
        [
            "synth",
            str(tmp_path / "y"),
            "--n",
            "1",
            "--site",
            "c",
            "--seed",
            "2",
            "--size",
            "24",
            "--format",
            "nifti",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        len(_rows(tmp_path / "y" / "labels.csv")) == 1
        and len(list((tmp_path / "y" / "nifti").glob("*.nii.gz"))) == 1
    )
