"""Batch ingest: any mix of DICOM folders and NIfTI files -> a store (``fmct ingest`` calls this).

Crash-safe and resumable: each input ends as one atomically written record (``records/<key>.json``);
scan files are written ``.npy`` first, ``.json`` last; a re-run removes leftovers of killed runs
(``*.tmp`` files, a ``.npy`` without its ``.json``), skips inputs already stored ``ok``, retries the
rest, and rebuilds ``manifest.parquet`` from all records. One bad scan never stops the batch: every
exception, even a worker process dying, becomes a manifest row.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmct.io.errors import ScanProblem, SkipScan
from fmct.store.manifest import build_manifest, make_row, path_key, read_record, records_dir, write_record
from fmct.store.writer import (
    TMP_SUFFIX,
    scan_complete,
    scan_paths,
    target_of_tmp,
    write_scan,
    write_store_info,
)
from fmct.timing import stage

_NIFTI = (".nii", ".nii.gz")
_MAX_REASON = 300


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
        )


@dataclass
class IngestSummary:
    """Counts of this run (``present`` = already in the store, not re-processed; ``warned`` = scans stored
    this run whose manifest row has warnings) and the manifest path."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    present: int = 0
    cleaned: int = 0
    warned: int = 0
    manifest: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        setattr(self, row["status"], getattr(self, row["status"]) + 1)
        self.warned += bool(row["status"] == "ok" and row.get("warnings"))

    def line(self) -> str:
        """``ingested N ok (W with warnings), M skipped, F failed -> STORE/manifest.parquet``."""
        present = f", {self.present} already present" if self.present else ""
        ok = f"{self.ok} ok" + (f" ({self.warned} with warnings: see the manifest)" if self.warned else "")
        return f"ingested {ok}, {self.skipped} skipped, {self.failed} failed{present} -> {self.manifest}"

    def exit_code(self, strict: bool = False) -> int:
        """0 when something was ingested or everything was already present; 1 when nothing was, or
        (``strict``) when any input failed."""
        if strict and self.failed:
            return 1
        return 0 if (self.ok + self.present) > 0 else 1


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
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip)
            for name in sorted(files):
                if not name.startswith("."):
                    add(Path(root) / name)
    return out


def _discover(files: Sequence[Path]):
    from fmct.io.dicom import discover

    return discover(files)


def plan(
    inputs: Sequence[str | os.PathLike], exclude: Path | None = None
) -> tuple[list[WorkItem], list[dict[str, Any]]]:
    """Find the work: one item per DICOM series and per NIfTI file, plus rows for rejected files and
    duplicate ids. Reads headers only; files under ``exclude`` (the store itself) are ignored."""
    from fmct.io.ids import patient_id_from_dicom, scan_id_from_nifti

    files = walk_inputs([Path(p) for p in inputs], exclude)
    niftis = [f for f in files if f.name.lower().endswith(_NIFTI)]
    items: list[WorkItem] = []
    rows: list[dict[str, Any]] = []
    found = _discover([f for f in files if not f.name.lower().endswith(_NIFTI)])
    for ref in found.series:
        src = os.path.commonpath([str(f.parent) for f in ref.files]) if ref.files else ""
        items.append(
            WorkItem(ref.scan_id, "dicom", src, ref.scan_id, ref.patient_id, ref.study_id, ref.n_files, ref)
        )
    for rej in found.rejected:
        rows.append(
            make_row(
                key=path_key(rej.path),
                kind="file",
                source=str(rej.path),
                status=getattr(rej, "status", "skipped"),
                reason=rej.reason,
                n_files=1,
            )
        )
    for nii in niftis:
        sid = scan_id_from_nifti(nii)
        items.append(
            WorkItem(sid, "nifti", str(nii), sid, patient_id_from_dicom(None, fallback=sid), None, 1, nii)
        )
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


def _read(item: WorkItem, min_slices: int):
    if item.kind == "nifti":
        from fmct.io.nifti import read_nifti

        return read_nifti(item.payload)
    from fmct.io.dicom import read_series

    return read_series(item.payload, min_slices=min_slices)


def process_item(item: WorkItem, root: str, cfg_dict: dict[str, Any], min_slices: int) -> dict[str, Any]:
    """Read, preprocess and store one input; write and return its manifest row. Never raises for a bad scan."""
    from fmct.preprocess import PreprocessConfig, preprocess

    t0 = time.perf_counter()
    row: dict[str, Any] = item.row_fields()
    try:
        vol = _read(item, min_slices)
        row["source_spacing_mm"] = [round(s, 4) for s in vol.spacing]
        if item.kind == "nifti":
            row["patient_id"] = vol.meta.get("patient_id") or row["patient_id"]
            row["study_id"] = vol.meta.get("study_id") or row["study_id"]
        if min(vol.shape) < min_slices:
            raise SkipScan(f"only {min(vol.shape)} slices (< min_slices {min_slices})")
        out = preprocess(vol, PreprocessConfig.from_dict(cfg_dict))
        del vol
        with stage("write"):
            write_scan(Path(root), item.scan_id, out, out.meta.get("preprocess", cfg_dict))
        row.update(
            status="ok",
            reason="",
            warnings="; ".join(str(w) for w in out.meta.get("warnings") or [])[:_MAX_REASON],
            shape=list(out.shape),
            spacing_mm=[round(s, 4) for s in out.spacing],
        )
    except ScanProblem as exc:
        row.update(status=exc.status, reason=exc.reason[:_MAX_REASON])
    except MemoryError:
        row.update(status="failed", reason="out of memory")
    except Exception as exc:  # one bad scan never stops the batch
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:_MAX_REASON])
    row["seconds"] = round(time.perf_counter() - t0, 3)
    row = make_row(**row)
    write_record(Path(root), row)
    return row


def cleanup(root: Path, shard: tuple[int, int] | None = None) -> int:
    """Remove what killed runs left behind in this shard: ``*.tmp`` files and half-written scans
    (a ``.npy`` without its ``.json``, or the reverse). Returns the number of files removed."""
    removed = 0
    for folder in (root / "scans", records_dir(root)):
        if not folder.is_dir():
            continue
        for p in folder.glob(f"*{TMP_SUFFIX}"):
            key = target_of_tmp(p).name.rsplit(".", 1)[0]
            if in_shard(key, shard):
                p.unlink(missing_ok=True)
                removed += 1
    scans = root / "scans"
    if scans.is_dir():
        for p in list(scans.glob("*.npy")) + list(scans.glob("*.json")):
            sid = p.stem
            if in_shard(sid, shard) and not scan_complete(root, sid):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def _init_worker() -> None:
    """One compute thread per worker. Ingest itself never imports torch (it would cost ~230 MB of RSS per
    worker); should anything import it later, it reads these variables then."""
    import sys

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _crash_row(item: WorkItem, root: Path) -> dict[str, Any]:
    row = make_row(
        **item.row_fields(),
        status="failed",
        reason="worker process died while processing this scan (out of memory?)",
    )
    write_record(root, row)
    for p in scan_paths(root, item.scan_id):
        p.unlink(missing_ok=True)
    return row


def _run_parallel(items: list[WorkItem], root: Path, args: tuple, workers: int) -> Iterator[dict[str, Any]]:
    """Process ``items`` in ``workers`` spawned processes; a crashed worker only costs its own scan
    (scans in flight when a pool breaks are retried one at a time)."""
    ctx = multiprocessing.get_context("spawn")
    broken: list[WorkItem] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as ex:
        futs = {ex.submit(process_item, it, str(root), *args): it for it in items}
        for fut in as_completed(futs):
            try:
                yield fut.result()
            except BrokenProcessPool:
                broken.append(futs[fut])
    for it in broken:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_worker) as ex:
            try:
                yield ex.submit(process_item, it, str(root), *args).result()
            except BrokenProcessPool:
                yield _crash_row(it, root)


def ingest(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    cfg=None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    min_slices: int = 10,
    progress: bool = False,
) -> IngestSummary:
    """Ingest DICOM folders / NIfTI files into the store at ``out``.

    Args:
        inputs: folders (walked recursively; DICOM series and NIfTI files found inside) and/or files.
        out: store folder (created; an existing store must use the same preprocessing).
        cfg: :class:`fmct.preprocess.PreprocessConfig` (default: the default config).
        workers: processes; 1 runs in this process.
        shard: ``(K, N)``: only the inputs whose stable hash falls in shard K of N (1-based).
        min_slices: volumes with fewer voxels than this along any axis are skipped.
        progress: show a rich progress bar.

    Returns:
        :class:`IngestSummary`; ``manifest.parquet`` rebuilt from all records of the store.
    """
    from fmct.preprocess import PreprocessConfig

    cfg = cfg or PreprocessConfig()
    root = Path(out)
    (root / "scans").mkdir(parents=True, exist_ok=True)
    records_dir(root).mkdir(parents=True, exist_ok=True)
    cfg_dict = cfg.to_dict()
    write_store_info(root, cfg_dict)
    summary = IngestSummary()
    try:
        summary.cleaned = cleanup(root, shard)
        items, rows = plan(inputs, exclude=root)
        for row in rows:
            if in_shard(row["key"], shard):
                write_record(root, row)
                summary.add(row)
        todo: list[WorkItem] = []
        for it in items:
            if not in_shard(it.key, shard):
                continue
            rec = read_record(root, it.key)
            if rec and rec.get("status") == "ok" and scan_complete(root, it.scan_id):
                summary.present += 1
                summary.rows.append(rec)
            else:
                todo.append(it)
        args = (cfg_dict, min_slices)
        results = (
            (process_item(it, str(root), *args) for it in todo)
            if workers <= 1 or len(todo) <= 1
            else _run_parallel(todo, root, args, min(workers, len(todo)))
        )
        if progress and todo:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            cols = (
                TextColumn("ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
            )
            with Progress(*cols, transient=False) as bar:
                task = bar.add_task("", total=len(todo))
                for row in results:
                    summary.add(row)
                    bar.update(task, advance=1, description=f"{row['scan_id']} {row['status']}")
        else:
            for row in results:
                summary.add(row)
    finally:
        summary.manifest = build_manifest(root)
    return summary
