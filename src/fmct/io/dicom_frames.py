"""Per-frame header facts of a DICOM CT series (single-frame CT and multi-frame Enhanced CT alike).

A *frame* is one 2D image: a single-frame file holds one, an Enhanced/Legacy-converted CT file holds
``NumberOfFrames`` of them with their geometry in the functional group sequences. Everything downstream
(sorting, spacing checks, affine) works on a flat list of :class:`Frame`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from fmct.io.errors import InvalidScan, SkipScan

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
CT_SOP_CLASSES = {
    CT_IMAGE: "CT Image",
    ENHANCED_CT: "Enhanced CT Image",
    LEGACY_ENHANCED_CT: "Legacy CT Image",
}
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class Frame:
    """One 2D image of a series.

    Attributes:
        file_index: index of its dataset in the series' dataset list.
        frame: frame number inside a multi-frame file, ``None`` for a single-frame file.
        position: ``(3,)`` ImagePositionPatient, LPS mm (centre of the first transmitted pixel).
        orientation: ``(6,)`` ImageOrientationPatient (row cosines, then column cosines), LPS.
        pixel_spacing: ``(row spacing, column spacing)`` in mm, as in PixelSpacing.
        rows, cols: image size.
        slope, intercept: rescale to HU.
        localizer: ImageType / FrameType says LOCALIZER.
        thickness: SliceThickness in mm (measured perpendicular to the image plane), ``None`` if absent
            or not a positive number.
    """

    file_index: int
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    slope: float
    intercept: float
    localizer: bool
    thickness: float | None = None


def _thickness(src) -> float | None:
    """A positive, finite SliceThickness (mm) of ``src`` or ``None`` (the tag is optional)."""
    try:
        v = float(src.get("SliceThickness", None)) if src is not None else math.nan
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def floats(value, n: int, what: str) -> np.ndarray:
    """``value`` (a DS/FD multi-value) as ``(n,)`` finite float64, else :class:`InvalidScan` naming ``what``."""
    if value is None:
        raise InvalidScan(f"missing {what}")
    seq = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
    try:
        arr = np.array([float(v) for v in seq], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidScan(f"unreadable {what}") from exc
    if arr.shape != (n,):
        raise InvalidScan(f"{what} has {arr.size} values, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise InvalidScan(f"{what} is not finite (NaN/Inf)")
    return arr


def _text(ds, keyword: str) -> str:
    v = ds.get(keyword, None)
    return "" if v is None else str(v).strip()


def _words(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [w.strip().upper() for w in value.split("\\")]
    return [str(w).strip().upper() for w in value]


def skip_reason(ds) -> str | None:
    """Why a dataset is not a CT image we ingest (``None`` if it is one). Reads headers only."""
    sop = _text(ds, "SOPClassUID")
    if sop.startswith(_SR_PREFIX):
        return "structured report (e.g. dose report), not an image series"
    if sop.startswith(_SC_PREFIX):
        return "secondary capture (screenshot or dose screen), not a CT acquisition"
    modality = _text(ds, "Modality")
    if modality != "CT":
        shown = modality if re.fullmatch(r"[A-Z0-9_]{1,16}", modality) else "missing or unrecognised"
        return f"modality {shown}, not CT"
    if sop not in CT_SOP_CLASSES:
        return f"SOP class '{uid_name(sop)}' is not a CT image"
    return None


def uid_name(uid: str) -> str:
    """pydicom's name for a registered UID; never echoes an unknown (possibly garbage) value."""
    from pydicom.uid import UID_dictionary

    return str(UID_dictionary[uid][0]) if uid in UID_dictionary else "unknown"


def _fg_item(ds, frame: int, keyword: str):
    """First item of functional group ``keyword`` for ``frame`` (per-frame wins over shared), or None."""
    for group_kw, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(group_kw, None)
        if groups is None or len(groups) <= index:
            continue
        seq = groups[index].get(keyword, None)
        if seq is not None and len(seq) > 0:
            return seq[0]
    return None


def _rescale(src) -> tuple[float, float]:
    slope = src.get("RescaleSlope", None) if src is not None else None
    intercept = src.get("RescaleIntercept", None) if src is not None else None
    s = 1.0 if slope is None or str(slope).strip() == "" else float(slope)
    b = 0.0 if intercept is None or str(intercept).strip() == "" else float(intercept)
    if not (math.isfinite(s) and math.isfinite(b)):
        raise InvalidScan("rescale slope/intercept is not finite (NaN/Inf)")
    if s == 0.0:
        raise InvalidScan("rescale slope is 0")
    return s, b


def _size(ds) -> tuple[int, int]:
    rows, cols = ds.get("Rows", None), ds.get("Columns", None)
    if rows is None or cols is None:
        raise InvalidScan("missing Rows/Columns")
    rows, cols = int(rows), int(cols)
    if rows < 1 or cols < 1:
        raise InvalidScan(f"empty image size {rows}x{cols}")
    return rows, cols


def frames_of(ds, file_index: int, has_pixels: bool | None = None) -> list[Frame]:
    """The frames of one dataset (1 for classic CT, ``NumberOfFrames`` for Enhanced CT).

    ``has_pixels``: whether the file holds pixel data, for a dataset read without it (``None``: look in
    ``ds``)."""
    if not (("PixelData" in ds) if has_pixels is None else has_pixels):
        raise InvalidScan("CT image without pixel data")
    rows, cols = _size(ds)
    image_localizer = "LOCALIZER" in _words(ds.get("ImageType", None))
    n_frames = ds.get("NumberOfFrames", None)
    multi = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if not multi:
        if n_frames is not None and int(n_frames) > 1:
            raise InvalidScan(f"multi-frame CT ({int(n_frames)} frames) without functional groups")
        spacing = floats(ds.get("PixelSpacing", None), 2, "PixelSpacing")
        slope, intercept = _rescale(ds)
        return [
            Frame(
                file_index=file_index,
                frame=None,
                position=floats(ds.get("ImagePositionPatient", None), 3, "ImagePositionPatient"),
                orientation=floats(ds.get("ImageOrientationPatient", None), 6, "ImageOrientationPatient"),
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                rows=rows,
                cols=cols,
                slope=slope,
                intercept=intercept,
                localizer=image_localizer,
                thickness=_thickness(ds),
            )
        ]
    n = int(n_frames) if n_frames is not None else 1
    if n < 1:
        raise InvalidScan(f"NumberOfFrames is {n}")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
    if per_frame is not None and len(per_frame) not in (0, n):
        raise InvalidScan(f"{len(per_frame)} per-frame functional groups for {n} frames")
    frames = []
    for i in range(n):
        pos = _fg_item(ds, i, "PlanePositionSequence")
        ori = _fg_item(ds, i, "PlaneOrientationSequence")
        meas = _fg_item(ds, i, "PixelMeasuresSequence")
        ftype = _fg_item(ds, i, "CTImageFrameTypeSequence")
        pvt = _fg_item(ds, i, "PixelValueTransformationSequence")
        spacing = floats(meas.get("PixelSpacing", None) if meas else None, 2, "PixelSpacing")
        slope, intercept = _rescale(pvt if pvt is not None else ds)
        frames.append(
            Frame(
                file_index=file_index,
                frame=i,
                position=floats(pos.get("ImagePositionPatient") if pos else None, 3, "ImagePositionPatient"),
                orientation=floats(
                    ori.get("ImageOrientationPatient") if ori else None, 6, "ImageOrientationPatient"
                ),
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                rows=rows,
                cols=cols,
                slope=slope,
                intercept=intercept,
                localizer=image_localizer
                or "LOCALIZER" in _words(ftype.get("FrameType", None) if ftype else None),
                thickness=_thickness(meas)
                if meas is not None and "SliceThickness" in meas
                else _thickness(ds),
            )
        )
    return frames


def check_skip(ds) -> None:
    """Raise :class:`SkipScan` if the dataset is not a CT image series member."""
    reason = skip_reason(ds)
    if reason:
        raise SkipScan(reason)
