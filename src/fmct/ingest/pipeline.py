"""Batch ingest: any mix of DICOM folders and NIfTI files -> a store (``fmct ingest`` calls this).

Crash-safe and resumable: each input ends as one atomically written record (``records/<key>.json``);
scan files are written ``.npy`` first, ``.json`` last; a re-run removes leftovers of killed runs
(``*.tmp`` files, a ``.npy`` without its ``.json``), skips inputs already stored ``ok``, retries the
rest, and rebuilds ``manifest.parquet`` from all records. One bad scan never stops the batch: every
exception, even a worker process dying, becomes a manifest row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmct.diskspace import NoSpaceError
from fmct.ingest.discovery_progress import discovery_progress
from fmct.ingest.plan import WorkItem, in_shard, plan
from fmct.ingest.summary import IngestSummary
from fmct.ingest.worker import process_item, run_parallel
from fmct.io.sources import SALT_FILE, store_salt
from fmct.preprocess import PreprocessConfig
from fmct.progress import progress as make_progress
from fmct.store.lock import StoreLock
from fmct.store.manifest import build_manifest, read_record, records_dir, write_record
from fmct.store.writer import TMP_SUFFIX, scan_complete, scan_damage, target_of_tmp, write_store_info


def remove_partial_writes(root: Path, shard: tuple[int, int] | None = None) -> int:
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


def run_ingest(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    cfg=None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    min_slices: int = 10,
    progress: bool = False,
    series_description: bool = False,
    hash_sources: bool = False,
) -> IngestSummary:
    """Ingest DICOM folders / NIfTI files into the store at ``out``.

    Args:
        inputs: folders (walked recursively; DICOM series and NIfTI files found inside) and/or files.
        out: store folder (created; an existing store must use the same preprocessing).
        cfg: :class:`fmct.preprocess.PreprocessConfig` (default: the default config).
        workers: processes (for reading DICOM headers, then for the scans); 1 runs in this process.
        shard: ``(K, N)``: only the inputs whose stable hash falls in shard K of N (1-based).
        min_slices: volumes with fewer voxels than this along any axis are skipped.
        progress: show progress (of discovery, then of the scans): a rich bar on a terminal, else lines.
        series_description: keep each DICOM series' SeriesDescription in the manifest, cleaned of words
            found in the header's identifying attributes and of long digit runs (free text: PS3.15's
            Basic Profile removes it, so it is off by default).
        hash_sources: name inputs (``source``, file names in reasons, NIfTI scan ids) by a salted hash
            instead of their path relative to ``inputs``; the salt is kept in ``out/.salt``. A store that
            has a salt stays hashed on later runs.

    Returns:
        :class:`IngestSummary`; ``manifest.parquet`` rebuilt from all records of the store.

    Raises:
        fmct.store.lock.StoreBusy: another live run writes this store (or an overlapping shard).
    """
    cfg = cfg or PreprocessConfig()
    root = Path(out)
    (root / "scans").mkdir(parents=True, exist_ok=True)
    records_dir(root).mkdir(parents=True, exist_ok=True)
    with StoreLock(root, shard) as lock:
        summary = IngestSummary(took_over=lock.took_over, unlocked=lock.unlocked)
        naming = {"series_description": series_description, "hash_sources": hash_sources}
        _ingest_locked(inputs, root, cfg.to_dict(), workers, shard, min_slices, progress, summary, naming)
    return summary


def _ingest_locked(
    inputs: Sequence[str | os.PathLike],
    root: Path,
    cfg_dict: dict[str, Any],
    workers: int,
    shard: tuple[int, int] | None,
    min_slices: int,
    progress: bool,
    summary: IngestSummary,
    naming: dict[str, bool],
) -> None:
    """The body of :func:`run_ingest`, run while holding the store's (shard's) write lock. ``naming``: its
    ``series_description`` and ``hash_sources`` arguments."""
    write_store_info(root, cfg_dict)
    series_description = naming["series_description"]
    salt = store_salt(root) if naming["hash_sources"] or (root / SALT_FILE).is_file() else None
    full = False
    try:
        summary.cleaned = remove_partial_writes(root, shard)
        with discovery_progress(progress) as on_files:
            items, rows = plan(inputs, root, series_description, salt, workers=workers, progress=on_files)
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
                damage = scan_damage(root, it.scan_id)
                if damage is None:
                    summary.present += 1
                    if rec.get("source") != it.source:  # named as this run names it (relative / hashed)
                        rec["source"] = it.source
                        write_record(root, rec)
                    summary.rows.append(rec)
                    continue
                summary.damaged.append(f"{it.scan_id} ({damage})")
            todo.append(it)
        args = (cfg_dict, min_slices)
        results = (
            (process_item(it, str(root), *args) for it in todo)
            if workers <= 1 or len(todo) <= 1
            else run_parallel(todo, root, args, min(workers, len(todo)))
        )
        if progress and todo:

            def cols() -> list[Any]:
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

                return [TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[last]}")]  # fmt: skip

            with make_progress(cols, lambda f: f"last {f['last']}") as bar:
                task = bar.add_task("ingest", total=len(todo), last="")
                for row in results:
                    summary.add(row)
                    bar.update(task, advance=1, last=f"{row['scan_id']} {row['status']}")
        else:
            for row in results:
                summary.add(row)
    except NoSpaceError:  # the disk is full: stop (every next scan would fail), keep what is stored
        full = True
        raise
    finally:
        try:
            summary.manifest = build_manifest(root)
        except NoSpaceError:
            if not full:
                raise
