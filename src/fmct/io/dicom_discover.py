"""Find DICOM series in any mix of folders and files, reading headers only.

``discover`` walks folders of any depth, with any file names, holding any number of patients, studies
and series, and groups the DICOM files by SeriesInstanceUID. Files that are not DICOM (or that are too
broken to read a header from) come back as :class:`Rejected`; NIfTI files and DICOMDIR indexes are
skipped quietly (the caller handles NIfTI); a DICOMDIR index is a :class:`Rejected` ("DICOMDIR index,
not an image"): its images are found by walking the folders, so the index itself is not read.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fmct.io.dicom_members import Member, Rejected
from fmct.io.dicom_pool import ProgressFn, read_members
from fmct.io.dicom_slice import SliceFacts
from fmct.io.ids import patient_id_from_dicom, scan_id_from_series_uid, study_id_from_uid
from fmct.io.nifti import is_nifti
from fmct.io.sources import SourceNamer


@dataclass
class SeriesRef:
    """One DICOM series found by :func:`discover`.

    ``series_uid`` is the raw SeriesInstanceUID: it must stay inside ``fmct.io`` (never print or store it);
    use the pseudonymous ``scan_id`` / ``patient_id`` / ``study_id`` everywhere else. ``namer`` names a
    file of the series in messages (:class:`fmct.io.sources.SourceNamer`: relative to the input root, or
    a salted hash); without one a file is named by its file name. ``series_number`` (SeriesNumber) and
    ``description`` (SeriesDescription cleaned of identifying words, see :mod:`fmct.io.dicom_describe`)
    tell series in one folder apart; each is the most common value among the files. ``facts`` (aligned
    with ``files``; ``None`` entries, or no list at all, where the reader must parse the file itself) is
    what discovery's header pass learnt of each plain CT slice (:mod:`fmct.io.dicom_slice`).
    """

    series_uid: str
    scan_id: str
    patient_id: str
    study_id: str
    files: list[Path]
    modality: str
    n_files: int = 0
    series_number: int | None = None
    description: str | None = field(default=None, repr=False)
    namer: Callable[[Path], str] | None = field(default=None, repr=False, compare=False)
    facts: list[SliceFacts | None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.n_files = len(self.files)

    def name_of(self, path: Path) -> str:
        """How ``path`` (one of ``files``) is named in messages (never an absolute path)."""
        return self.namer(path) if self.namer is not None else Path(path).name

    def __repr__(self) -> str:  # never show the raw UID
        return f"SeriesRef(scan_id={self.scan_id!r}, modality={self.modality!r}, n_files={self.n_files})"


@dataclass
class DiscoveryResult:
    """``series`` sorted by ``scan_id``; ``rejected`` sorted by path."""

    series: list[SeriesRef] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Every regular file under ``paths`` (files are yielded as given; folders are walked recursively,
    hidden entries skipped), each at most once, in sorted order per folder."""
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                folder = Path(root)
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    f = folder / name
                    if f not in seen:
                        seen.add(f)
                        yield f
        elif p not in seen:
            seen.add(p)
            yield p


def discover(
    paths: Sequence[str | os.PathLike],
    namer: Callable[[Path], Any] | None = None,
    workers: int = 0,
    progress: ProgressFn | None = None,
) -> DiscoveryResult:
    """Group the DICOM files under ``paths`` (folders and/or files) into series.

    Args:
        paths: folders (walked recursively) and/or files, in any mix (a single path is accepted too).
        namer: names files in messages (default: relative to ``paths``, see :class:`SourceNamer`).
        workers: read the headers in this many worker processes (0 or 1, or too few files to pay for the
            processes' start-up, see :func:`fmct.io.dicom_pool.worth_a_pool`: in this process); the
            result is the same either way.
        progress: called as ``progress(files read, files in all)`` while headers are read.

    Returns:
        :class:`DiscoveryResult` with one :class:`SeriesRef` per SeriesInstanceUID (files sorted by path)
        and one :class:`Rejected` per file that is not a readable DICOM header. Never raises for a bad file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [path for path in iter_files(paths) if not is_nifti(path)]
    return discover_files(files, namer or SourceNamer(paths), workers, progress)


def discover_files(
    files: Sequence[Path],
    namer: Callable[[Path], Any],
    workers: int = 0,
    progress: ProgressFn | None = None,
) -> DiscoveryResult:
    """:func:`discover` of a list of files found already (no folders, each once, no NIfTI files: e.g.
    :func:`fmct.ingest.plan.walk_inputs`'s), named in messages by ``namer``."""
    groups: dict[str, list[Member]] = {}
    rejected: list[Rejected] = []
    for rec in read_members(files, workers, progress):
        if isinstance(rec, Rejected):
            rejected.append(rec)
        else:
            groups.setdefault(rec.series_uid, []).append(rec)

    series = []
    for uid, members in groups.items():
        members.sort(key=lambda m: str(m.path))
        first = members[0]
        scan_id = scan_id_from_series_uid(uid)
        facts = [
            None if m.facts is None else replace(m.facts, frame=replace(m.facts.frame, file_index=i))
            for i, m in enumerate(members)
        ]
        series.append(
            SeriesRef(
                series_uid=uid,
                scan_id=scan_id,
                patient_id=patient_id_from_dicom(first.patient_id, fallback=scan_id),
                study_id=study_id_from_uid(first.study_uid or None),
                files=[m.path for m in members],
                modality=Counter(m.modality for m in members).most_common(1)[0][0],
                series_number=_most_common(m.number for m in members),
                description=_most_common(m.description for m in members),
                namer=namer,
                facts=facts if any(f is not None for f in facts) else None,
            )
        )
    series.sort(key=lambda s: s.scan_id)
    rejected.sort(key=lambda r: str(r.path))
    return DiscoveryResult(series=series, rejected=rejected)


def _most_common(values: Iterable[Any]) -> Any:
    """The most common non-``None`` value (``None`` when there is none)."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None
