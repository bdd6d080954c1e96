"""One input -> one stored scan and its manifest record (:func:`process_item`), and the process pool that runs
it in parallel (:func:`fmct.procpool.spawn_pool`): a crashed worker costs only its own scan, and workers die with
the ingest process.

A worker imports neither torch nor pandas (about 230 MB and 100 MB of RSS each)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from fmct.cpu_heap import reuse_freed_memory
from fmct.diskspace import NoSpaceError
from fmct.ingest.plan import WorkItem
from fmct.io.dicom import read_series
from fmct.io.errors import ScanProblem, SkipScan
from fmct.io.nifti import read_nifti
from fmct.preprocess import PreprocessConfig, preprocess
from fmct.procpool import spawn_pool
from fmct.store.manifest import make_row, write_record
from fmct.store.writer import scan_paths, write_scan
from fmct.timing import stage

_MAX_REASON = 300
#: glibc heap setting of a worker (:func:`fmct.cpu_heap.reuse_freed_memory`): blocks under 32 MiB from the heap,
#: up to 64 MiB of freed heap kept for the next scan.
HEAP_BYTES = (32 << 20, 64 << 20)


def _read(item: WorkItem, min_slices: int):
    if item.kind == "nifti":
        return read_nifti(item.payload)
    return read_series(item.payload, min_slices=min_slices)


def _scrub_origin(text: str, item: WorkItem) -> str:
    """``text`` with the input's real path (as a library may have echoed it) replaced by its source name."""
    return text.replace(item.origin, item.source) if item.origin else text


def process_item(item: WorkItem, root: str, cfg_dict: dict[str, Any], min_slices: int) -> dict[str, Any]:
    """Read, preprocess and store one input; write and return its manifest row. Never raises for a bad scan."""
    reuse_freed_memory(*HEAP_BYTES)  # the large arrays of one scan are reused by the next (once per process)
    t0 = time.perf_counter()
    row: dict[str, Any] = item.row_fields()
    try:
        vol = _read(item, min_slices)
        row["source_spacing_mm"] = [round(s, 4) for s in vol.spacing]
        if item.kind == "nifti":
            row["patient_id"] = vol.meta.get("patient_id") or row["patient_id"]
            row["study_id"] = vol.meta.get("study_id") or row["study_id"]
            vol.meta["scan_id"] = item.scan_id  # a hashed id replaces the file name
        if min(vol.shape) < min_slices:
            raise SkipScan(f"only {min(vol.shape)} slices (< min_slices {min_slices})")
        handover = [vol]
        del vol  # preprocess then holds the only reference: the source is freed once resampled
        out = preprocess(handover.pop(), PreprocessConfig.from_dict(cfg_dict))
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
        row.update(status=exc.status, reason=_scrub_origin(exc.reason, item)[:_MAX_REASON])
    except MemoryError:
        row.update(status="failed", reason="out of memory")
    except NoSpaceError:  # not this scan's fault: the whole batch stops
        raise
    except Exception as exc:  # one bad scan never stops the batch
        row.update(status="failed", reason=_scrub_origin(f"{type(exc).__name__}: {exc}", item)[:_MAX_REASON])
    row["seconds"] = round(time.perf_counter() - t0, 3)
    row = make_row(**row)
    write_record(Path(root), row)
    return row


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


def run_parallel(items: list[WorkItem], root: Path, args: tuple, workers: int) -> Iterator[dict[str, Any]]:
    """Process ``items`` in ``workers`` spawned processes; a crashed worker only costs its own scan
    (scans in flight when a pool breaks are retried one at a time)."""
    broken: list[WorkItem] = []
    with spawn_pool(workers) as ex:
        futs = {ex.submit(process_item, it, str(root), *args): it for it in items}
        for fut in as_completed(futs):
            try:
                yield fut.result()
            except BrokenProcessPool:
                broken.append(futs[fut])
            except NoSpaceError:
                ex.shutdown(wait=True, cancel_futures=True)
                raise
    for it in broken:
        with spawn_pool(1) as ex:
            try:
                yield ex.submit(process_item, it, str(root), *args).result()
            except BrokenProcessPool:
                yield _crash_row(it, root)
