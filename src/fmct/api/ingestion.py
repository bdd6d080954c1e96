"""``fmct.ingest``: DICOM folders / NIfTI files -> a store of preprocessed scans (``fmct ingest``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmct.api.errors import UsageError

if TYPE_CHECKING:
    from fmct.ingest.summary import IngestSummary


def _shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    from fmct.ingest.plan import parse_shard

    try:
        return parse_shard(shard if shard is None or isinstance(shard, str) else "/".join(map(str, shard)))
    except ValueError as e:
        raise UsageError(str(e)) from None


def ingest(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    spacing: float = 1.0,
    deface: bool = False,
    workers: int = 1,
    shard: str | tuple[int, int] | None = None,
    min_slices: int = 10,
    series_description: bool = False,
    hash_sources: bool = False,
    preprocess: Any = None,
    progress: bool = True,
) -> IngestSummary:
    """Ingest head CT scans into the store ``out`` (created; a re-run resumes): every DICOM series and NIfTI
    file under ``inputs`` is reoriented to RAS, resampled to ``spacing`` mm, cropped to the head (defaced with
    ``deface``) and written with a manifest row saying what happened and why. One bad scan never stops the batch.

    Args:
        inputs: folders (searched recursively) and/or NIfTI files.
        workers: processes (0 or 1: this process).  shard: ``"K/N"`` or ``(K, N)``: only that part of the inputs.
        min_slices: skip volumes with fewer slices.  series_description / hash_sources: see ``fmct ingest --help``.
        preprocess: a :class:`fmct.preprocess.PreprocessConfig` (overrides ``spacing`` and ``deface``).
        progress: show a progress bar.

    Returns:
        :class:`fmct.ingest.IngestSummary`: counts ``ok`` / ``skipped`` / ``failed`` / ``present``, ``manifest``
        (the path of manifest.parquet), ``rows`` (this run's manifest rows), ``line()``, ``exit_code()``.

    Raises:
        FileNotFoundError: an input that is not there.  UsageError: a bad shard or spacing.
        ValueError: the store was built with other preprocessing.
        fmct.store.lock.StoreBusy: another ingest writes this store.  fmct.diskspace.NoSpaceError: disk full
            (what was stored is kept; a re-run resumes).
    """
    from fmct.ingest.pipeline import run_ingest
    from fmct.preprocess import PreprocessConfig

    paths = [Path(inputs)] if isinstance(inputs, str | os.PathLike) else [Path(p) for p in inputs]
    if not paths:
        raise UsageError("no input given: name DICOM folders and/or NIfTI files")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    shard_kn = _shard(shard)
    if preprocess is None:
        try:
            preprocess = PreprocessConfig(spacing=spacing, deface=deface)
        except ValueError as e:
            raise UsageError(str(e)) from None
    return run_ingest(
        paths,
        out,
        preprocess,
        workers=workers,
        shard=shard_kn,
        min_slices=min_slices,
        progress=progress,
        series_description=series_description,
        hash_sources=hash_sources,
    )
