"""One scan from a path: a NIfTI file, a DICOM folder holding one usable CT series, or one DICOM file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from fmct.io.dicom import discover, read_series
from fmct.io.errors import InvalidScan, ScanProblem, SkipScan
from fmct.io.nifti import is_nifti, read_nifti
from fmct.io.sources import SourceNamer
from fmct.io.volume import Volume


def _folder_of(ref, root: Path, namer) -> str:
    """The name of the folder holding a series' files (their common parent; ``root`` when it has none)."""
    parents = {f.parent for f in ref.files}
    folder = Path(os.path.commonpath([str(d) for d in parents])) if parents else root
    return namer(folder)


def load_volume(
    path: str | os.PathLike,
    *,
    multiple: Literal["error", "thinnest"] = "error",
    min_slices: int = 10,
    namer: Callable[[Path], str] | None = None,
) -> Volume:
    """Read ``path`` as one float32 HU :class:`Volume` (voxel->RAS affine).

    ``path`` may be a ``.nii``/``.nii.gz`` file, a folder (any nesting) of DICOM files, or a single DICOM
    file (then its series is looked up in the file's folder). Every series found is read with
    :func:`fmct.io.dicom.read_series` (the selection ingest makes); exactly one must be usable.

    Args:
        multiple: what to do when several series are usable: ``"error"`` (default) raises InvalidScan
            listing them (by pseudonymous scan id); ``"thinnest"`` keeps the one with the smallest slice
            spacing (most slices on ties) and notes the choice in ``meta["warnings"]``.
        min_slices: passed to ``read_series``.
        namer: names paths in error messages (default :class:`fmct.io.sources.SourceNamer` of ``path``:
            relative to its parent folder, never absolute).

    Raises:
        InvalidScan / SkipScan: no usable series (the single series' own error if there was one series),
        several usable series with ``multiple="error"``, or an unreadable NIfTI / missing path.
    """

    p = Path(path)
    namer = namer or SourceNamer([p])
    name = namer(p)
    if not p.exists():
        raise InvalidScan(f"{name}: no such file or folder")
    if p.is_file() and is_nifti(p):
        return read_nifti(p)
    found = discover([p.parent if p.is_file() else p], namer=namer)
    series = found.series
    if p.is_file():
        series = [s for s in series if p in s.files or p.resolve() in {f.resolve() for f in s.files}]
        if not series:
            raise InvalidScan(f"{name}: not a readable DICOM file")
    if not series:
        niftis = sorted(f for f in p.rglob("*") if f.is_file() and is_nifti(f))
        if len(niftis) == 1:
            return read_nifti(niftis[0])
        extra = f", {len(niftis)} NIfTI files" if niftis else ""
        raise InvalidScan(f"{name}: no DICOM series found ({len(found.rejected)} non-DICOM files{extra})")

    folders = {ref.scan_id: _folder_of(ref, p, namer) for ref in series}
    usable: list[Volume] = []
    problems: list[tuple[str, ScanProblem]] = []
    n_usable = 0
    for ref in series:
        try:
            vol = read_series(ref, min_slices=min_slices)
        except ScanProblem as exc:
            problems.append((ref.scan_id, exc))
            continue
        usable.append(vol)
        n_usable += 1
        if multiple == "thinnest" and len(usable) > 1:  # keep only the best so far (memory)
            usable = [min(usable, key=lambda v: (v.meta["slice_spacing"], -v.meta["n_slices"]))]

    if not usable:
        if len(problems) == 1:
            raise problems[0][1]
        listed = "; ".join(f"{sid}: {exc.status} ({exc.reason})" for sid, exc in problems[:6])
        cls = InvalidScan if any(isinstance(e, InvalidScan) for _, e in problems) else SkipScan
        raise cls(f"{name}: no usable CT series among {len(problems)} series: {listed}")
    if len(usable) > 1:
        listed = ", ".join(
            f"{folders.get(v.meta['scan_id'], name)} ({v.meta['scan_id']}, {v.meta['n_slices']} slices, "
            f"{v.meta['slice_spacing']:.2f} mm)"
            for v in usable
        )
        raise InvalidScan(
            f"{name}: {len(usable)} usable CT series: {listed}; pass one series' folder, or take the thinnest "
            f"(fmct predict --series thinnest; load_volume(..., multiple='thinnest'))"
        )
    vol = usable[0]
    if n_usable > 1:
        vol.meta["warnings"].append(f"picked the thinnest of {n_usable} usable CT series")
    return vol
