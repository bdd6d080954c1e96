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

from fmct.diskspace import NoSpaceError
from fmct.io.errors import ScanProblem, SkipScan
from fmct.store.lock import StoreLock
from fmct.store.manifest import build_manifest, make_row, path_key, read_record, records_dir, write_record
from fmct.store.writer import (
    TMP_SUFFIX,
    scan_complete,
    scan_damage,
    scan_paths,
    target_of_tmp,
    write_scan,
    write_store_info,
)
from fmct.timing import stage

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


@dataclass
class IngestSummary:
    """Counts of this run (``present`` = already in the store, not re-processed; ``warned`` = scans stored
    this run whose manifest row has warnings; ``damaged`` = stored scans whose file was found damaged
    (wrong size) and were re-done) and the manifest path."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    present: int = 0
    cleaned: int = 0
    warned: int = 0
    took_over: str | None = None
    unlocked: str | None = None
    damaged: list[str] = field(default_factory=list)
    manifest: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # this run's manifest rows

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


def _discover(files: Sequence[Path], namer=None):
    from fmct.io.dicom import discover

    return discover(files, namer=namer)


def plan(
    inputs: Sequence[str | os.PathLike],
    exclude: Path | None = None,
    series_description: bool = False,
    salt: str | None = None,
) -> tuple[list[WorkItem], list[dict[str, Any]]]:
    """Find the work: one item per DICOM series and per NIfTI file, plus rows for rejected files and
    duplicate ids. Reads headers only; files under ``exclude`` (the store itself) are ignored;
    ``series_description``: keep the cleaned SeriesDescription of DICOM series. Sources are named
    relative to ``inputs`` or, with ``salt``, by salted hash (then NIfTI scan ids are hashes too: their
    file names may be patient names); see :class:`fmct.io.sources.SourceNamer`."""
    from fmct.io.ids import patient_id_from_dicom, scan_id_from_nifti
    from fmct.io.nifti import is_nifti
    from fmct.io.sources import SourceNamer

    files = walk_inputs([Path(p) for p in inputs], exclude)
    niftis = [f for f in files if is_nifti(f)]
    items: list[WorkItem] = []
    rows: list[dict[str, Any]] = []
    namer = SourceNamer(inputs, salt)
    found = _discover([f for f in files if not is_nifti(f)], namer)
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


def _read(item: WorkItem, min_slices: int):
    if item.kind == "nifti":
        from fmct.io.nifti import read_nifti

        return read_nifti(item.payload)
    from fmct.io.dicom import read_series

    return read_series(item.payload, min_slices=min_slices)


def _scrub_origin(text: str, item: WorkItem) -> str:
    """``text`` with the input's real path (as a library may have echoed it) replaced by its source name."""
    return text.replace(item.origin, item.source) if item.origin else text


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
            vol.meta["scan_id"] = item.scan_id  # a hashed id replaces the file name
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


def _die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this worker process exit when ``parent_pid`` (the ingest process) dies, even by SIGKILL:
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, plus a watchdog thread that polls ``getppid`` (other
    platforms, and the window before ``prctl``)."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the watchdog remains
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="fmct-parent-watch", daemon=True).start()


def _init_worker(parent_pid: int) -> None:
    """Die with the parent; one compute thread per worker. Ingest itself never imports torch (it would cost
    ~230 MB of RSS per worker); should anything import it later, it reads these variables then."""
    import sys

    _die_with_parent(parent_pid)
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
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
    ) as ex:
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
        with ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
        ) as ex:
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
    series_description: bool = False,
    hash_sources: bool = False,
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
    from fmct.preprocess import PreprocessConfig

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
    """The body of :func:`ingest`, run while holding the store's (shard's) write lock. ``naming``: its
    ``series_description`` and ``hash_sources`` arguments."""
    from fmct.io.sources import SALT_FILE, store_salt

    write_store_info(root, cfg_dict)
    series_description = naming["series_description"]
    salt = store_salt(root) if naming["hash_sources"] or (root / SALT_FILE).is_file() else None
    full = False
    try:
        summary.cleaned = remove_partial_writes(root, shard)
        items, rows = plan(inputs, exclude=root, series_description=series_description, salt=salt)
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
            else _run_parallel(todo, root, args, min(workers, len(todo)))
        )
        if progress and todo:
            from fmct.progress import progress as make_progress

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
