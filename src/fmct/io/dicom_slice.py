"""One DICOM file's header, read once: where its pixel data starts, and (:class:`SliceFacts`) everything
:func:`fmct.io.dicom.read_series` needs from a plain CT slice, so that discovery's header pass serves the
reader too and the reader only reads pixel bytes.

Facts are kept only for the common case (a single-frame CT image, uncompressed 16-bit pixels, a header
that passes every check the reader makes); any other file has none and the reader parses it itself, so its
problems are reported exactly as before.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fmct.io.dicom_file import read_dicom
from fmct.io.dicom_frames import Frame, floats, frames_of, skip_reason
from fmct.io.dicom_pixels import Native16, native16_layout, pixel_tag_at
from fmct.io.dicom_rawkey import raw_element_type


@dataclass(frozen=True)
class SliceFacts:
    """What the reader needs from one plain CT slice file.

    Attributes:
        frame: its geometry and rescale (``file_index`` = the file's index in its series' ``files``).
        offset: byte offset of its PixelData element.
        layout: how its stored values sit in the pixel bytes.
        stamp: ``(size in bytes, mtime in ns)`` when the header was read: a file changed since is re-read.
    """

    frame: Frame
    offset: int
    layout: Native16
    stamp: tuple[int, int]


def header_at(fh) -> tuple[Any, int | None, bool]:
    """``(dataset, pixel data offset or None, has pixel data)`` of the Part 10 file open as ``fh``: the
    header alone (``dcmread(stop_before_pixels=True)``); raises pydicom's ``InvalidDicomError`` for a file
    without the 128-byte preamble."""
    import pydicom

    ds = pydicom.dcmread(fh, stop_before_pixels=True, force=False)
    has_pixels = pixel_tag_at(fh, ds)
    return ds, (fh.tell() if has_pixels else None), has_pixels


def read_header(path) -> tuple[Any, int | None, bool | None]:
    """``(dataset, pixel data offset, has pixel data)``: the header alone with where its pixel data starts;
    a file without the 128-byte preamble is read whole by :func:`read_dicom` (offset and flag ``None``)."""
    from pydicom.errors import InvalidDicomError

    with open(path, "rb") as fh:
        try:
            return header_at(fh)
        except InvalidDicomError:
            pass
    return read_dicom(path), None, None


#: Bytes of a file read at once for its header: a CT slice's header is a few kB (real ones here 2-8 kB), so
#: one read mostly holds it and the start of the pixel data (a 64 kB read costs ~3x a 16 kB one); a longer
#: header (scouts, dose screens: up to ~70 kB) is read again, up to :data:`LONG_HEAD_BYTES`.
HEAD_BYTES = 16 * 1024
LONG_HEAD_BYTES = 1024 * 1024


def read_start(path, size: int | None = None) -> tuple[bytes, tuple[int, int]]:
    """The first ``size`` (default :data:`HEAD_BYTES`) bytes of ``path`` (all of a shorter file) and its
    ``(size in bytes, mtime in ns)``, in one read."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES if size is None else size)
        st = os.fstat(fh.fileno())
    return head, (st.st_size, st.st_mtime_ns)


def header_of(path, head: bytes, size: int) -> tuple[Any, int | None, bool]:
    """:func:`header_at` of the file ``path`` of ``size`` bytes whose first bytes are ``head``
    (:func:`read_start`): parsed from ``head`` where the header lies in it, else from the file."""
    if len(head) >= size:  # the whole file
        return header_at(io.BytesIO(head))
    found = _header_in(head)
    if found is None:  # the header runs past the bytes read (or no pixel data): parse the file
        with open(path, "rb") as fh:
            found = header_at(fh)
    return found


def _header_in(head: bytes) -> tuple[Any, int, bool] | None:
    """:func:`header_at` of the first bytes ``head`` of a longer file when the whole header, up to its pixel
    data element, lies in them (pydicom's warnings then shown as a parse of the file shows them); ``None``
    when it does not (nothing shown: the file is parsed again)."""
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            ds, offset, has_pixels = header_at(io.BytesIO(head))
    except InvalidDicomError:
        raise  # no preamble and DICM: decided by the first 132 bytes alone
    except Exception:  # maybe a value cut off at the end of ``head``
        return None
    if not has_pixels:
        return None
    for w in shown:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds, offset, has_pixels


#: Every attribute besides ImagePositionPatient that a plain slice's facts are made from (by
#: :func:`skip_reason`, :func:`frames_of` and :func:`native16_layout`); the files of a series mostly share them.
SHARED_KEYWORDS = (
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "ImageType",
    "NumberOfFrames",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    "PixelSpacing",
    "ImageOrientationPatient",
    "RescaleSlope",
    "RescaleIntercept",
    "SliceThickness",
    "BitsAllocated",
    "SamplesPerPixel",
    "PixelRepresentation",
    "BitsStored",
)


def slice_facts(
    ds: Any, offset: int | None, has_pixels: bool, stamp: tuple[int, int], file_index: int = 0
) -> SliceFacts | None:
    """:class:`SliceFacts` of a header read by :func:`header_at`, or ``None`` when the file needs the
    reader's own parse (no pixel data, not a CT image, multi-frame, compressed or not 16-bit, or a header
    the reader's checks refuse: those are then reported by the reader, naming the file)."""
    if offset is None or not has_pixels:
        return None
    return _parse_facts(ds, offset, has_pixels, stamp, file_index)


def facts_like(known: SliceFacts, position: np.ndarray, offset: int, stamp: tuple[int, int]) -> SliceFacts:
    """The facts of a file whose :data:`SHARED_KEYWORDS` hold the same bytes as those of the file ``known``
    was parsed from (so everything but its position, pixel data offset and stamp is ``known``'s; its
    ``file_index`` is 0, as :func:`slice_facts` gives by default)."""
    frame = replace(known.frame, file_index=0, position=position,
                    orientation=known.frame.orientation.copy())  # fmt: skip
    return SliceFacts(frame=frame, offset=offset, layout=known.layout, stamp=stamp)


POSITION_TAG = 0x00200032  # ImagePositionPatient


def position_of(ds: Any) -> np.ndarray:
    """ImagePositionPatient of ``ds`` as ``(3,)`` finite float64 LPS mm, exactly what
    :func:`fmct.io.dicom_frames.floats` of pydicom's value gives (raises what it raises); an undecoded
    value is read by :func:`raw_position` where it can be."""
    elem = ds.get_item(POSITION_TAG) if hasattr(ds, "get_item") else None
    position = raw_position(elem)
    if position is not None:
        return position
    return floats(ds.get("ImagePositionPatient", None), 3, "ImagePositionPatient")


def raw_position(elem: Any) -> np.ndarray | None:
    """An undecoded ImagePositionPatient element (pydicom ``RawDataElement``) as ``(3,)`` finite float64:
    what pydicom's DS decoding and :func:`fmct.io.dicom_frames.floats` give (``float`` of each part of the
    ``\\``-separated text; ~3 us where pydicom's decoding costs ~25 us); ``None`` for anything else (a
    decoded element, another VR, not 3 finite numbers), where the caller asks pydicom."""
    if type(elem) is not raw_element_type() or elem.VR not in ("DS", None) or not elem.value:
        return None
    parts = elem.value.decode("latin-1").strip().rstrip(" \x00").split("\\")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    return np.array(values, dtype=np.float64)


def _parse_facts(
    ds: Any, offset: int, has_pixels: bool, stamp: tuple[int, int], file_index: int
) -> SliceFacts | None:
    """:func:`slice_facts` from the decoded header alone."""
    try:
        if skip_reason(ds) is not None:
            return None
        frames = frames_of(ds, file_index, has_pixels)
        layout = native16_layout(ds)
    except Exception:  # any problem is the reader's to report
        return None
    if layout is None or len(frames) != 1 or frames[0].frame is not None:
        return None
    return SliceFacts(frame=frames[0], offset=offset, layout=layout, stamp=stamp)
