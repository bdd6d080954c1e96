"""Finding the work of an ingest: the files under the inputs, one :class:`WorkItem` per DICOM series and per
NIfTI file (headers only), rows for rejected files and duplicate ids, and the stable shards ``K/N``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmct.io.dicom import discover_files
from fmct.io.ids import patient_id_from_dicom, scan_id_from_nifti
from fmct.io.nifti import is_nifti
from fmct.io.sources import SourceNamer
from fmct.store.manifest import make_row, path_key


@dataclass(frozen=True)
class WorkItem:
    """One input to process: a DICOM series (``payload`` = ``SeriesRef``) or a NIfTI file (a ``Path``)."""

    key: str
    kind: str
    source: str
    scan_id: str
    patient_id: str | None
    study_id: str | None
    n_files: int
    payload: Any
    series_number: int | None = None
    series_description: str | None = None
    origin: str = ""  # the input's real path: only to scrub it out of messages, never stored

    def row_fields(self) -> dict[str, Any]:
        """The manifest fields known before the scan is read."""
        return dict(
            key=self.key,
            kind=self.kind,
            source=self.source,
            scan_id=self.scan_id,
            patient_id=self.patient_id,
            study_id=self.study_id,
            n_files=self.n_files,
            series_number=self.series_number,
            series_description=self.series_description,
        )


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``key`` belongs to shard ``K`` of ``N`` (``shard=(K, N)``, ``1 <= K <= N``; stable hash)."""
    if shard is None:
        return True
    k, n = shard
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % n == k - 1


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)``; raises ``ValueError`` with a clear message."""
    if text is None:
        return None
    try:
        k_s, n_s = text.split("/")
        k, n = int(k_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 1/4), got {text!r}") from None
    if not (n >= 1 and 1 <= k <= n):
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def walk_inputs(paths: Iterable[Path], exclude: Path | None = None) -> list[Path]:
    """Every file under ``paths`` (files as given, folders recursively, hidden entries and the folder
    ``exclude`` skipped), each once, sorted per folder."""
    skip = exclude.resolve() if exclude is not None else None
    out: list[Path] = []
    seen: set[Path] = set()

    def add(f: Path) -> None:
        if f not in seen:
            seen.add(f)
            out.append(f)

    for p in paths:
        if not p.is_dir():
            add(p)
            continue
        for root, dirs, files in os.walk(p):
            folder = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (folder / d).resolve() != skip)
            for name in sorted(files):
                if not name.startswith("."):
                    add(folder / name)
    return out


def plan(
    inputs: Sequence[str | os.PathLike],
    exclude: Path | None = None,
    series_description: bool = False,
    salt: str | None = None,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[WorkItem], list[dict[str, Any]]]:
    """Find the work: one item per DICOM series and per NIfTI file, plus rows for rejected files and
    duplicate ids. Reads headers only; files under ``exclude`` (the store itself) are ignored;
    ``series_description``: keep the cleaned SeriesDescription of DICOM series. Sources are named
    relative to ``inputs`` or, with ``salt``, by salted hash (then NIfTI scan ids are hashes too: their
    file names may be patient names); see :class:`fmct.io.sources.SourceNamer`. ``workers`` and ``progress``:
    how DICOM headers are read, see :func:`fmct.io.dicom_discover.discover` (the result is the same)."""
    files = walk_inputs([Path(p) for p in inputs], exclude)
    niftis = [f for f in files if is_nifti(f)]
    items: list[WorkItem] = []
    rows: list[dict[str, Any]] = []
    namer = SourceNamer(inputs, salt)
    found = discover_files([f for f in files if not is_nifti(f)], namer, workers=workers, progress=progress)
    for ref in found.series:
        folder = os.path.commonpath([str(f.parent) for f in ref.files]) if ref.files else ""
        items.append(
            WorkItem(
                ref.scan_id, "dicom", namer(folder), ref.scan_id, ref.patient_id, ref.study_id, ref.n_files,
                ref, series_number=ref.series_number,
                series_description=ref.description if series_description else None,
                origin=os.path.abspath(folder),
            )
        )  # fmt: skip
    for rej in found.rejected:
        rows.append(
            make_row(
                key=path_key(rej.path, salt),
                kind="file",
                source=namer(rej.path),
                status=getattr(rej, "status", "skipped"),
                reason=rej.reason,
                n_files=1,
            )
        )
    for nii in niftis:
        sid = namer.hash(nii) if namer.hashed else scan_id_from_nifti(nii)
        items.append(
            WorkItem(
                sid, "nifti", namer(nii), sid, patient_id_from_dicom(None, fallback=sid), None, 1, nii,
                origin=os.path.abspath(nii),
            )
        )  # fmt: skip
    unique: list[WorkItem] = []
    first: dict[str, str] = {}
    for it in items:
        if it.scan_id in first:
            key = f"{it.scan_id}~{hashlib.sha256(it.source.encode()).hexdigest()[:8]}"
            rows.append(
                make_row(
                    key=key,
                    kind=it.kind,
                    source=it.source,
                    scan_id=it.scan_id,
                    status="failed",
                    n_files=it.n_files,
                    reason=f"duplicate scan_id {it.scan_id} (also from {first[it.scan_id]})",
                )
            )
        else:
            first[it.scan_id] = it.source
            unique.append(it)
    return unique, rows
