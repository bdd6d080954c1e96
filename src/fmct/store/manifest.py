"""The manifest: one row per input (DICOM series, NIfTI file, rejected file), with status and reason.

``warnings`` lists, ``"; "``-joined, what was repaired on the way in for a scan that was stored (a
localizer dropped, a missing slice interpolated, duplicate slices merged, the thinnest of several series
picked); empty when nothing was.

``source`` names the input relative to the input root it was found under (starting with that root's
name), or by salted hash (``ingest(hash_sources=True)``): never an absolute path.

Rows live as one JSON record per input in ``STORE/records/<key>.json`` (written atomically as each
input finishes, so a killed run loses at most the inputs in flight). ``manifest.parquet`` is rebuilt
from the records; a row whose status is ``ok`` but whose scan files are gone is reported as failed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmct.store.writer import atomic_write_bytes, atomic_write_json, scan_complete

if TYPE_CHECKING:  # pandas (+ pyarrow, ~100 MB) is imported only where a manifest is built or read
    import pandas as pd

#: Manifest columns, in order. ``key`` names the record file; ``kind`` is dicom / nifti / file.
#: ``series_number`` (DICOM SeriesNumber), ``n_files`` and, with ``ingest(series_description=True)``,
#: ``series_description`` (cleaned, see :mod:`fmct.io.dicom_describe`) tell series in one folder apart.
COLUMNS = [
    "scan_id",
    "patient_id",
    "study_id",
    "status",
    "reason",
    "warnings",
    "kind",
    "source",
    "n_files",
    "series_number",
    "series_description",
    "shape",
    "spacing_mm",
    "source_spacing_mm",
    "seconds",
    "key",
]
STATUSES = ("ok", "skipped", "failed")


def path_key(path: str | Path, salt: str | None = None) -> str:
    """Record key of an input that has no scan id (a rejected file): ``r-`` + hash of its resolved path
    (salted when ``salt`` is given)."""
    text = str(Path(path).resolve())
    if salt is not None:
        text = f"{salt}\0{text}"
    return "r-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def records_dir(root: Path) -> Path:
    return Path(root) / "records"


def record_path(root: Path, key: str) -> Path:
    return records_dir(root) / f"{key}.json"


def make_row(**values: Any) -> dict[str, Any]:
    """A manifest row with every column present (missing ones ``None``)."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown manifest columns: {sorted(unknown)}")
    if values.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {values.get('status')!r}")
    return {c: values.get(c) for c in COLUMNS}


def write_record(root: Path, row: dict[str, Any]) -> None:
    """Persist one row (atomically) as ``records/<row['key']>.json``."""
    atomic_write_json(record_path(root, row["key"]), row)


def read_record(root: Path, key: str) -> dict[str, Any] | None:
    """The stored row for ``key``, or ``None`` when absent or unreadable."""
    try:
        return json.loads(record_path(root, key).read_text())
    except (OSError, ValueError):
        return None


def read_records(root: Path) -> list[dict[str, Any]]:
    """All readable records (``.tmp`` leftovers ignored), sorted by ``(source, key)``."""
    rows = []
    folder = records_dir(root)
    if folder.is_dir():
        for p in folder.glob("*.json"):
            try:
                rows.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue
    rows.sort(key=lambda r: (str(r.get("source") or ""), str(r.get("key") or "")))
    return rows


def manifest_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with exactly :data:`COLUMNS`."""
    import pandas as pd

    df = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=COLUMNS)
    for c in ("n_files", "series_number"):
        df[c] = df[c].astype("Int64")
    df["seconds"] = df["seconds"].astype("float64")
    df["warnings"] = df["warnings"].fillna("").astype(str)
    return df


def build_manifest(root: Path) -> Path:
    """Rebuild ``manifest.parquet`` from ``records/`` (atomically) and return its path.

    Rows marked ``ok`` whose scan files are missing become ``failed`` ("scan files missing").
    """
    root = Path(root)
    rows = read_records(root)
    for r in rows:
        if r.get("status") == "ok" and not (r.get("scan_id") and scan_complete(root, r["scan_id"])):
            r["status"] = "failed"
            r["reason"] = "scan files missing from the store (re-run ingest)"
    df = manifest_frame(rows)
    out = root / "manifest.parquet"
    atomic_write_bytes(out, lambda f: df.to_parquet(f, index=False))
    return out


def read_manifest(root: Path) -> pd.DataFrame:
    """``manifest.parquet`` of a store (built from the records when the parquet file is missing)."""
    import pandas as pd

    path = Path(root) / "manifest.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    return manifest_frame(read_records(root))
