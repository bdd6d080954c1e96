"""Import labels of public head-CT datasets (RSNA ICH, CQ500) into fmct's ``labels.csv``.

Both importers map their images to fmct scan ids through the DICOM headers (``fmct.io.dicom.discover``
hashes SeriesInstanceUID / PatientID), so the labels join with what ``fmct ingest`` stores. Raw patient
identifiers are never written: CQ500 names are matched by hashing them the same way as PatientID.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fmct.io.dicom import discover
from fmct.io.ids import patient_id_from_dicom
from fmct.labels import FINDINGS, ICH_SUBTYPES

#: RSNA subtype -> fmct finding
RSNA_SUBTYPES = {
    "epidural": "edh",
    "intraparenchymal": "iph",
    "intraventricular": "ivh",
    "subarachnoid": "sah",
    "subdural": "sdh",
    "any": "ich",
}

#: CQ500 reads.csv finding (after "R1:") -> fmct finding
CQ500_FINDINGS = {
    "ICH": "ich",
    "IPH": "iph",
    "IVH": "ivh",
    "SDH": "sdh",
    "EDH": "edh",
    "SAH": "sah",
    "Fracture": "fracture",
    "MassEffect": "mass",
    "MidlineShift": "midline_shift",
}


class LabelImportError(ValueError):
    """A labels file that cannot be imported (the message names the file and the reason)."""


def _order_columns(df: pd.DataFrame) -> pd.DataFrame:
    head = [c for c in ("scan_id", "patient_id", "study_id", "site") if c in df]
    finds = [f for f in FINDINGS if f in df]
    rest = [c for c in df.columns if c not in head and c not in finds]
    return df[head + finds + rest]


def read_rsna(csv_path: str | Path) -> pd.DataFrame:
    """RSNA ``stage_2_train.csv`` -> one row per image: ``sop_uid`` and 0/1 columns of fmct findings.

    Rows look like ``ID_12cadc6af_epidural,0``; duplicated rows (present in the real file) are merged
    with a logical OR.
    """
    path = Path(csv_path)
    try:
        raw = pd.read_csv(path, dtype={"ID": str})
    except (OSError, pd.errors.ParserError) as e:
        raise LabelImportError(f"{path}: unreadable CSV ({e})") from None
    if not {"ID", "Label"} <= set(raw.columns):
        raise LabelImportError(f"{path}: expected columns ID,Label (RSNA stage_2_train.csv format)")
    parts = raw["ID"].str.rsplit("_", n=1, expand=True)
    if parts.shape[1] != 2 or parts[1].isna().any():
        raise LabelImportError(f"{path}: IDs must look like ID_<sop>_<subtype>")
    raw = raw.assign(sop_uid=parts[0], subtype=parts[1])
    unknown = sorted(set(raw["subtype"]) - set(RSNA_SUBTYPES))
    if unknown:
        raise LabelImportError(f"{path}: unknown subtype(s) {unknown}; expected {sorted(RSNA_SUBTYPES)}")
    raw["finding"] = raw["subtype"].map(RSNA_SUBTYPES)
    wide = raw.pivot_table(index="sop_uid", columns="finding", values="Label", aggfunc="max").reset_index()
    wide.columns.name = None
    return wide


def _sop_uid(path: Path) -> str | None:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RSNA's "ID_<hex>" SOP UIDs are not valid UI values
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            return str(ds.get("SOPInstanceUID", "") or "").strip() or None
    except Exception:
        return None


def import_rsna(csv_path: str | Path, dicom_dir: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """RSNA ICH labels aggregated to series: a series is positive for a subtype if any slice is.

    Args:
        csv_path: ``stage_2_train.csv``.
        dicom_dir: folder(s) with the RSNA DICOM images (headers give SOPInstanceUID ->
            SeriesInstanceUID / PatientID; the file name ``<sop>.dcm`` is used when a header lacks it).

    Returns:
        DataFrame ``scan_id, patient_id, study_id, <findings present>, n_slices, n_labelled_slices``.
        ``ich`` is also set when any subtype is positive.
    """

    per_image = read_rsna(csv_path).set_index("sop_uid")
    dirs = [dicom_dir] if isinstance(dicom_dir, str | Path) else list(dicom_dir)
    found = discover([Path(d) for d in dirs])
    if not found.series:
        raise LabelImportError(f"{', '.join(map(str, dirs))}: no DICOM series found")
    rows = []
    for ref in found.series:
        sops = [_sop_uid(p) or p.stem for p in ref.files]
        lab = per_image.reindex([s for s in sops if s in per_image.index])
        if lab.empty:
            continue
        row = {"scan_id": ref.scan_id, "patient_id": ref.patient_id, "study_id": ref.study_id}
        for f in per_image.columns:
            row[f] = int(lab[f].fillna(0).max())
        row["n_slices"] = len(sops)
        row["n_labelled_slices"] = len(lab)
        rows.append(row)
    if not rows:
        raise LabelImportError(f"{csv_path}: none of its images were found among the DICOM headers")
    df = pd.DataFrame(rows)
    subtypes = [s for s in ICH_SUBTYPES if s in df]
    if subtypes:
        df["ich"] = np.maximum(df.get("ich", 0), df[subtypes].max(axis=1)).astype(int)
    return _order_columns(df)


_READER = re.compile(r"^R(\d+):(.+)$")


def import_cq500(
    csv_path: str | Path, dicom_dir: str | Path | Sequence[str | Path] | None = None
) -> pd.DataFrame:
    """CQ500 ``reads.csv`` -> majority vote per finding plus each reader's label (``r1_ich`` ...).

    Args:
        csv_path: reads.csv with ``name`` (``CQ500-CT-0``...) and ``R<k>:<finding>`` columns.
        dicom_dir: CQ500 DICOM folder(s); when given every series of a patient gets that patient's
            labels (``name`` is matched to PatientID by hashing both with ``patient_id_from_dicom``).
            Without it, ``scan_id`` is the CQ500 name.

    Returns:
        DataFrame ``scan_id, patient_id, <findings>, r<k>_<finding>..., n_readers``.
    """
    path = Path(csv_path)
    try:
        raw = pd.read_csv(path, dtype={"name": str})
    except (OSError, pd.errors.ParserError) as e:
        raise LabelImportError(f"{path}: unreadable CSV ({e})") from None
    if "name" not in raw:
        raise LabelImportError(f"{path}: no 'name' column (CQ500 reads.csv format)")
    readers: dict[str, dict[str, str]] = {}
    for col in raw.columns:
        m = _READER.match(str(col).strip())
        if m and m.group(2) in CQ500_FINDINGS:
            readers.setdefault(CQ500_FINDINGS[m.group(2)], {})[m.group(1)] = col
    if not readers:
        raise LabelImportError(f"{path}: no reader columns like R1:ICH")
    out = pd.DataFrame({"name": raw["name"].astype(str).str.strip()})
    n_readers = 0
    for finding, cols in readers.items():
        votes = np.stack([pd.to_numeric(raw[c], errors="coerce").to_numpy() for c in cols.values()], axis=1)
        n_readers = max(n_readers, votes.shape[1])
        n_votes = np.isfinite(votes).sum(axis=1)
        pos = np.nansum(votes, axis=1)
        out[finding] = np.where(n_votes > 0, (pos * 2 > n_votes).astype(float), np.nan)
        for k, c in sorted(cols.items()):
            out[f"r{k}_{finding}"] = pd.to_numeric(raw[c], errors="coerce")
    out["n_readers"] = n_readers
    if dicom_dir is None:
        out.insert(0, "scan_id", out["name"])
        out.insert(1, "patient_id", [patient_id_from_dicom(n, fallback=n) for n in out["name"]])
        return _order_columns(out.drop(columns=["name"]))

    dirs = [dicom_dir] if isinstance(dicom_dir, str | Path) else list(dicom_dir)
    found = discover([Path(d) for d in dirs])
    by_patient: dict[str, list] = {}
    for ref in found.series:
        by_patient.setdefault(ref.patient_id, []).append(ref)
    rows = []
    for _, r in out.iterrows():
        for ref in by_patient.get(patient_id_from_dicom(r["name"], fallback=r["name"]), []):
            d = r.drop(labels=["name"]).to_dict()
            rows.append({"scan_id": ref.scan_id, "patient_id": ref.patient_id, "study_id": ref.study_id, **d})
    if not rows:
        raise LabelImportError(f"{path}: no CQ500 name matched a PatientID under {', '.join(map(str, dirs))}")
    return _order_columns(pd.DataFrame(rows))


def write_labels(df: pd.DataFrame, out: str | Path) -> Path:
    """Write a labels table as CSV atomically (0/1 findings as integers where complete)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = df.copy()
    for c in df.columns:
        if c in FINDINGS or re.match(r"^r\d+_", c):
            col = pd.to_numeric(df[c], errors="coerce")
            df[c] = col.astype("Int64") if col.notna().any() else col
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out)
    return out
