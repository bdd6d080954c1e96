"""The header datasets of one source CT series, for DICOM objects derived from it (SR, SEG).

This is the one place where full headers, patient identifiers included, leave :mod:`fmct.io`: the objects a
PACS files with the study must copy the source's patient and study modules and reference its UIDs. Nothing
here may be printed or stored anywhere else; :func:`scrub_phi` cleans messages that mention a source.

:func:`read_source_series` reads headers only (no pixel data) and keeps the image frames
:func:`fmct.io.dicom.read_series` keeps (CT images, localizers dropped, one frame per position), sorted by
position along the image-plane normal, each with its own plane geometry (gantry tilt and uneven spacing
included, since each frame keeps its own ImagePositionPatient).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fmct.io.dicom import _PHI_KEYWORDS, _read_header
from fmct.io.dicom_discover import SeriesRef, discover
from fmct.io.dicom_frames import Frame, frames_of, skip_reason
from fmct.io.dicom_geometry import affine_ras, duplicate_groups, plane_axes
from fmct.io.errors import InvalidScan


@dataclass
class SourceSeries:
    """One CT series as a DICOM object derived from it must see it.

    Attributes:
        datasets: header datasets (no pixel data), patient identifiers included. Single-frame series: one
            per kept frame, in the order of ``frames``; an Enhanced / Legacy multi-frame series: its one
            dataset (``frames`` are then all its frames, in frame order).
        frames: geometry of each image plane, in the order a derived SEG lists its frames.
    """

    datasets: list[Any]
    frames: list[Frame] = field(repr=False)

    @property
    def multiframe(self) -> bool:
        return self.frames[0].frame is not None

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    def frame_affine(self, index: int) -> np.ndarray:
        """``(4, 4)`` voxel ``(X = column, Y = row, Z = 0)`` -> RAS mm affine of frame ``index``'s plane
        (the third axis is the unit normal, so a ``(cols, rows, 1)`` grid is the frame itself)."""
        f = self.frames[index]
        row, col, normal = plane_axes(f.orientation)
        return affine_ras(row, col, f.pixel_spacing, f.position, normal)

    def __repr__(self) -> str:  # never show identifiers
        return f"SourceSeries({len(self.datasets)} datasets, {len(self.frames)} frames)"


def series_by_scan_id(paths: list[str | os.PathLike]) -> dict[str, SeriesRef]:
    """The DICOM series under ``paths`` (folders and/or files; headers only), by pseudonymous scan id."""
    return {ref.scan_id: ref for ref in discover(paths).series} if paths else {}


def read_source_series(ref: SeriesRef) -> SourceSeries:
    """Headers and frame geometry of the series ``ref`` (see the module doc).

    Raises:
        InvalidScan: no CT image frame in the series, or a header without the geometry a frame needs.
    """
    datasets: list[Any] = []
    frames: list[Frame] = []
    for path in ref.files:
        ds, _, has_pixels = _read_header(path)  # has_pixels None: a preamble-less file, read whole
        if skip_reason(ds) is not None:
            continue
        datasets.append(ds)
        frames.extend(frames_of(ds, len(datasets) - 1, has_pixels))
    if not frames:
        raise InvalidScan("no CT image in the series")
    if frames[0].frame is not None:  # multi-frame: a SEG lists the source's frames in their own order
        if len(datasets) > 1:
            raise InvalidScan("a series of several multi-frame files is not supported for DICOM outputs")
        return SourceSeries([_with_type2(datasets[0])], frames)
    frames = [f for f in frames if not f.localizer]
    if not frames:
        raise InvalidScan("only localizer images in the series")
    _, _, normal = plane_axes(frames[0].orientation)
    dist = np.array([f.position @ normal for f in frames])
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    keep = [group[0] for group in duplicate_groups(dist[order])]  # one frame per position
    frames = [frames[i] for i in keep]
    kept = [_with_type2(datasets[f.file_index]) for f in frames]
    frames = [replace(f, file_index=i) for i, f in enumerate(frames)]
    return SourceSeries(kept, frames)


#: Type 2 attributes of the Patient and General Study modules (present, possibly empty, in a valid image);
#: derived objects copy them, so a source that lacks one gets it empty.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _with_type2(ds: Any) -> Any:
    for kw in _TYPE2:
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


def scrub_phi(message: str, source: SourceSeries | SeriesRef | None) -> str:
    """``message`` without the source's identifying values (names, IDs, dates, UIDs): for warnings that go
    into outputs without patient identifiers (result.json, the console). A :class:`SeriesRef` (the series
    could not be read as a source) has its first header read for the values."""

    datasets: list[Any] = []
    if isinstance(source, SourceSeries):
        datasets = source.datasets[:1]
    elif isinstance(source, SeriesRef) and source.files:
        try:
            datasets = [_read_header(source.files[0])[0]]
        except Exception:  # unreadable: the UID pattern below still applies
            datasets = []
    secrets: set[str] = {source.series_uid} if isinstance(source, SeriesRef) else set()
    for ds in datasets:
        for kw in _PHI_KEYWORDS:
            value = str(ds.get(kw, "") or "").strip()
            if len(value) >= 3:
                secrets.add(value)
    for s in sorted(secrets, key=len, reverse=True):
        message = message.replace(s, "<redacted>")
    return re.sub(r"\b\d+(\.\d+){4,}\b", "<uid>", message)[:300]
