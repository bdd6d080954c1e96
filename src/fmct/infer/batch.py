"""Batch prediction inputs and its table: many series in one ``fmct predict --batch`` call.

A batch INPUT is expanded into the inputs :func:`fmct.infer.predict.predict_paths` takes:

- a folder: each subfolder (a DICOM series, or a study folder read like one ``fmct predict`` input) and each
  NIfTI file directly inside it is one scan (hidden entries and other files are left out);
- an ``fmct ingest`` store folder (it holds ``manifest.parquet``): each of its ok scans (``STORE::scan_id``);
- a text file: one input per line (a DICOM folder, a NIfTI file or ``STORE::scan_id``); blank lines and
  lines starting with ``#`` are skipped, relative paths are relative to the list file's folder.

The result table has one row per input: ``input`` (its own name, or a salted hash: never the path above it),
the pseudonymous ``scan_id`` / ``patient_id`` / ``study_id`` (:mod:`fmct.io.ids`), ``status``, ``error``
(why it failed), one probability column per finding, ``warnings`` (joined by ``"; "``) and the timings.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fmct.infer.predict import STORE_SEP
from fmct.io.nifti import is_nifti

#: Columns of the table before the findings, and after them.
ID_COLUMNS = ("input", "scan_id", "patient_id", "study_id", "status", "error")
TAIL_COLUMNS = ("n_warnings", "warnings", "read_s", "preprocess_s", "model_s", "saliency_s")


class BatchInputError(ValueError):
    """A batch INPUT that lists nothing to predict, or is not there (the message names it)."""


def batch_inputs(spec: str | os.PathLike, name: str | None = None) -> list[str]:
    """The inputs of one batch INPUT (see the module docstring), in a stable (sorted / listed) order.

    ``name`` names ``spec`` in error messages (default: its own file or folder name).

    Raises:
        BatchInputError: ``spec`` does not exist, or holds / lists no input.
    """

    path = Path(spec)
    name = name or path.name or str(path)
    if not path.exists():
        raise BatchInputError(f"{name}: no such folder or list file")
    if path.is_dir() and (path / "manifest.parquet").is_file():
        from fmct.store import ScanStore

        found = [f"{path}{STORE_SEP}{sid}" for sid in ScanStore(path).scan_ids]
        what = "no ok scan (an fmct store)"
    elif path.is_dir():
        found = [
            str(p)
            for p in sorted(path.iterdir())
            if not p.name.startswith(".") and (p.is_dir() or (p.is_file() and is_nifti(p)))
        ]
        what = "no subfolder or NIfTI file (a folder holding one DICOM series is predicted without --batch)"
    elif is_nifti(path):
        found, what = [str(path)], ""
    else:
        found, what = (
            list_file_inputs(path, name),
            "no input (one DICOM folder, NIfTI file or STORE::scan_id a line)",
        )
    if not found:
        raise BatchInputError(f"{name}: {what}")
    return found


def list_file_inputs(path: str | os.PathLike, name: str | None = None) -> list[str]:
    """The inputs listed in a text file, one a line (blank lines and ``#`` comments skipped; relative paths,
    also the store part of ``STORE::scan_id``, taken from the list file's folder). ``name`` names the file
    in errors (default: its own name)."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise BatchInputError(f"{name or path.name}: not a text file listing inputs (one a line)") from None
    base = path.parent
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        root, sep, scan = line.rpartition(STORE_SEP) if STORE_SEP in line else (line, "", "")
        full = root if Path(root).is_absolute() else str(base / root)
        out.append(f"{full}{sep}{scan}")
    return out


def result_rows(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One table row per :func:`fmct.infer.predict.predict_one` entry (columns :func:`columns`)."""
    rows = []
    for r in results:
        probs = r.get("probabilities") or {}
        warns = list(r.get("warnings") or [])
        timings = r.get("timings") or {}
        row: dict[str, Any] = {c: r.get(c) for c in ID_COLUMNS}
        row.update({f: probs.get(f) for f in labels})
        row.update(n_warnings=len(warns), warnings="; ".join(warns))
        row.update({k: timings.get(k) for k in TAIL_COLUMNS[2:]})
        rows.append(row)
    return rows


def columns(labels: Sequence[str]) -> list[str]:
    """The table's columns: :data:`ID_COLUMNS`, one probability column per finding, :data:`TAIL_COLUMNS`."""
    return [*ID_COLUMNS, *labels, *TAIL_COLUMNS]


def results_csv(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """The table of :func:`result_rows` as CSV text (empty cells for missing values)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(labels), lineterminator="\n")
    writer.writeheader()
    for row in result_rows(results, labels):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def failure_summary(results: Sequence[Mapping[str, Any]]) -> str | None:
    """``"2 of 10 series not predicted (1 failed, 1 skipped)"``; None when every one was predicted."""
    bad: dict[str, int] = {}
    for r in results:
        if r.get("status") != "ok":
            status = str(r.get("status") or "failed")
            bad[status] = bad.get(status, 0) + 1
    if not bad:
        return None
    parts = ", ".join(f"{n} {status}" for status, n in sorted(bad.items()))
    return f"{sum(bad.values())} of {len(results)} series not predicted ({parts})"
