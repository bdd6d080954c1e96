"""Pseudonymous identifiers. No PHI leaves ``fmct.io``: raw UIDs and patient IDs are hashed here.

The same functions are used by ``fmct synth`` (to name the scans in ``labels.csv``), by ingest
(to name stored scans) and by the label importers, so ids join across tools.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

#: Salt for pseudonyms; set FMCT_ID_SALT to make pseudonyms unlinkable across sites.
_SALT = os.environ.get("FMCT_ID_SALT", "fmct-v1")


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(f"{_SALT}:{text}".encode()).hexdigest()[:n]


def scan_id_from_series_uid(series_instance_uid: str) -> str:
    """``s-`` + 16 hex chars of the salted hash of a DICOM SeriesInstanceUID."""
    return "s-" + _digest(str(series_instance_uid).strip(), 16)


def patient_id_from_dicom(patient_id: str | None, fallback: str) -> str:
    """``p-`` + 12 hex chars of the salted hash of PatientID (``fallback`` when the tag is empty)."""
    raw = (patient_id or "").strip() or f"unknown:{fallback}"
    return "p-" + _digest(raw, 12)


def study_id_from_uid(study_instance_uid: str | None) -> str:
    """``t-`` + 12 hex chars of the salted hash of StudyInstanceUID."""
    return "t-" + _digest(str(study_instance_uid or "unknown").strip(), 12)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def scan_id_from_nifti(path: str | Path) -> str:
    """A NIfTI file's scan id: its file name without ``.nii``/``.nii.gz``, made filesystem-safe."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return _SAFE.sub("_", name) or "scan"
