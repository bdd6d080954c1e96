"""Discovery's header reading (:func:`fmct.io.dicom_members.read_chunk`) in this process or, with
``workers >= 2`` and enough files, in a pool of spawned worker processes (:func:`fmct.procpool.spawn_pool`)
that read chunks of files and send back small records (never pydicom datasets), in the order of the files
either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields
from pathlib import Path

from fmct.io.dicom_members import Member, Rejected, read_chunk

#: The worker pool pays off when the reading time it saves, about ``files * (1 - 1/workers)`` header reads,
#: exceeds its start-up (spawning interpreters that import pydicom and numpy, ~0.4 s) and the records' way
#: back: measured on 2 cores, ~0.2 ms a header, break-even at ~4000 files with 2 workers.
BREAK_EVEN_READS_SAVED = 2000
#: Progress callback: ``(files read, files in all)``.
ProgressFn = Callable[[int, int], None]
_MEMBER_FIELDS = tuple(f.name for f in fields(Member))[1:]  # all but the path, its first field


def read_members(
    paths: Sequence[Path], workers: int = 0, progress: ProgressFn | None = None
) -> list[Member | Rejected]:
    """:func:`fmct.io.dicom_members.read_member` of each of ``paths``, in order: in ``workers`` worker
    processes (chunks of files) when that pays (:func:`worth_a_pool`), else in this process (one memo for all
    files). ``progress(read, total)`` is called as files are read."""
    if not worth_a_pool(len(paths), workers):
        return read_chunk(paths, progress)
    return _read_parallel(paths, workers, progress)


def worth_a_pool(files: int, workers: int) -> bool:
    """Whether reading ``files`` headers in ``workers`` processes beats reading them here: never for
    ``workers < 2``, else when it saves at least :data:`BREAK_EVEN_READS_SAVED` reads' time."""
    return workers >= 2 and files * (1 - 1 / workers) >= BREAK_EVEN_READS_SAVED


def chunk_size(total: int, workers: int) -> int:
    """Files per worker task: about 8 tasks per worker (load balance, progress), 16 to 256 files each."""
    return max(16, min(256, -(-total // (workers * 8))))


def _read_parallel(
    paths: Sequence[Path], workers: int, progress: ProgressFn | None
) -> list[Member | Rejected]:
    """:func:`read_members` in a pool; chunks whose worker died (the pool broke) are read here instead."""
    from fmct.procpool import spawn_pool

    size = chunk_size(len(paths), workers)
    chunks = [list(paths[i : i + size]) for i in range(0, len(paths), size)]
    results: list[list[Member | Rejected] | None] = [None] * len(chunks)
    done = 0
    with spawn_pool(min(workers, len(chunks))) as pool:
        futures = {pool.submit(read_records, chunk): i for i, chunk in enumerate(chunks)}
        for fut in as_completed(futures):
            try:
                results[futures[fut]] = with_paths(chunks[futures[fut]], fut.result())
            except BrokenProcessPool:
                continue
            done += len(chunks[futures[fut]])
            if progress is not None:
                progress(done, len(paths))
    for i, chunk in enumerate(chunks):
        if results[i] is None:
            results[i] = read_chunk(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, len(paths))
    return [m for chunk_result in results for m in chunk_result]


def read_records(paths: Sequence[Path]) -> list[tuple]:
    """:func:`fmct.io.dicom_members.read_chunk` of ``paths`` as records without the paths (a worker's task:
    the caller has the paths, and unpickling a ``Path`` costs more than the rest of a record): ``(reason,)``
    for a :class:`Rejected`, the fields of a :class:`Member` but its path for a member."""
    return [
        (rec.reason,) if isinstance(rec, Rejected) else tuple(getattr(rec, name) for name in _MEMBER_FIELDS)
        for rec in read_chunk(paths)
    ]


def with_paths(paths: Sequence[Path], records: list[tuple]) -> list[Member | Rejected]:
    """The :class:`Member` and :class:`Rejected` records of :func:`read_records` with their ``paths``."""
    return [
        Rejected(p, rec[0]) if len(rec) == 1 else Member(p, *rec)
        for p, rec in zip(paths, records, strict=True)
    ]
