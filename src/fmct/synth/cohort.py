"""Generate a synthetic cohort on disk: DICOM series or NIfTI files, ``labels.csv``, masks and previews.

Layout under ``OUT``::

    dicom/<scan_id>/<nnnn>.dcm     (fmt="dicom")       nifti/<scan_id>.nii.gz   (fmt="nifti")
    masks/<scan_id>.nii.gz         (masks=True)        preview/<scan_id>.png    (preview=True)
    labels.csv                     scan_id, patient_id, site, <finding>..., <finding>_size...

Ids join with ingest: ``scan_id = fmct.io.ids.scan_id_from_series_uid(SeriesInstanceUID)`` (the NIfTI file
of a scan is named after the same id, so ``scan_id_from_nifti`` gives it back) and ``patient_id =
fmct.io.ids.patient_id_from_dicom(PatientID, fallback=scan_id)``. Running again into the same ``OUT``
replaces the rows of the regenerated scans and keeps the others, so sites ``a``, ``b`` and ``c`` can share
one folder. Output bytes depend only on the arguments (not on ``workers``).
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fmct.io.ids import patient_id_from_dicom, scan_id_from_nifti, scan_id_from_series_uid
from fmct.io.nifti import write_nifti
from fmct.labels import FINDINGS
from fmct.progress import progress as make_progress
from fmct.synth.dicom_writer import synth_patient_id, synth_uids, write_dicom_series
from fmct.synth.scan import DEFAULT_SIZE, SynthScan, synth_scan
from fmct.synth.sites import get_site

LABEL_COLUMNS: list[str] = ["scan_id", "patient_id", "site", *FINDINGS, *(f"{f}_size" for f in FINDINGS)]


def scan_ids(site: str, seed: int, index: int) -> tuple[str, str]:
    """``(scan_id, patient_id)`` of scan ``index`` exactly as ingest computes them from its DICOM tags."""
    sid = scan_id_from_series_uid(synth_uids(site, seed, index)["series"])
    return sid, patient_id_from_dicom(synth_patient_id(site, seed, index), fallback=sid)


def _one(job: tuple) -> dict:
    """Generate and write scan ``index``; returns its labels.csv row."""
    out, index, site, seed, fmt, masks, preview, size, prevalence = job
    st = get_site(site)
    scan: SynthScan = synth_scan(index, st.name, seed, size=size, prevalence=prevalence, fmt=fmt)
    sid, pid = scan_ids(st.name, seed, index)
    if fmt == "dicom":
        write_dicom_series(scan, out / "dicom" / sid, st, seed, index)
    else:
        path = out / "nifti" / f"{sid}.nii.gz"
        assert scan_id_from_nifti(path) == sid
        write_nifti(np.rint(scan.volume.array).astype(np.int16), scan.volume.affine, path)
    if masks and scan.mask is not None:
        write_nifti(scan.mask.astype(np.uint8), scan.volume.affine, out / "masks" / f"{sid}.nii.gz")
    if preview:
        from fmct.synth.preview import write_preview

        write_preview(scan, out / "preview" / f"{sid}.png", title=f"{sid} (site {st.name})")
    row: dict = {"scan_id": sid, "patient_id": pid, "site": st.name}
    for f in FINDINGS:
        row[f] = int(scan.labels[f])
    for f in FINDINGS:
        row[f"{f}_size"] = f"{float(scan.sizes[f]):.3f}" if scan.labels[f] else "0"
    return row


def _write_labels(path: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into ``path`` (rows of the same scan_id are replaced), atomically."""
    keep: list[dict] = []
    new_ids = {r["scan_id"] for r in rows}
    if path.exists():
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("scan_id") not in new_ids:
                    keep.append(r)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LABEL_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in keep + rows:
        w.writerow(r)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


def generate_cohort(
    out: str | os.PathLike,
    n: int,
    site: str,
    seed: int,
    fmt: str = "dicom",
    masks: bool = False,
    preview: bool = False,
    workers: int = 1,
    size: int = DEFAULT_SIZE,
    prevalence: dict[str, float] | None = None,
    progress: bool = True,
    start: int = 0,
) -> Path:
    """Write ``n`` synthetic scans (indices ``start .. start+n-1``) of ``site`` into ``out``.

    Returns the path of ``out/labels.csv``. ``workers > 1`` runs scans in parallel processes; the bytes
    written do not depend on it.
    """
    if fmt not in ("dicom", "nifti"):
        raise ValueError(f"fmt must be 'dicom' or 'nifti', got {fmt!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    st = get_site(site)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (out, i, st.name, int(seed), fmt, masks, preview, int(size), prevalence)
        for i in range(start, start + n)
    ]
    rows: list[dict | None] = [None] * n

    def cols() -> list:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        return [TextColumn(f"synth site {st.name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]

    with make_progress(cols, enabled=progress) as bar:
        task = bar.add_task(f"synth site {st.name}", total=n)
        if workers <= 1:
            for j, job in enumerate(jobs):
                rows[j] = _one(job)
                bar.advance(task)
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as ex:
                for j, row in enumerate(ex.map(_one, jobs, chunksize=1)):
                    rows[j] = row
                    bar.advance(task)
    labels = out / "labels.csv"
    _write_labels(labels, [r for r in rows if r is not None])
    return labels
