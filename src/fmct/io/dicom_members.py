"""One file's part in discovery: its header (and slice facts) read once and reduced to the few values that
grouping needs (:class:`Member`), or the reason it is not a DICOM image (:class:`Rejected`).

:func:`read_chunk` reads a list of files, remembering what the files of a series share;
:func:`fmct.io.dicom_pool.read_members` runs it here or in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmct.io.dicom_describe import DESCRIPTION_KEYWORDS, IDENTIFYING_TAGS, clean_description, series_number
from fmct.io.dicom_file import read_dicom
from fmct.io.dicom_rawhead import raw_head
from fmct.io.dicom_rawkey import key_of, raw_key
from fmct.io.dicom_slice import (
    LONG_HEAD_BYTES,
    POSITION_TAG,
    SHARED_KEYWORDS,
    SliceFacts,
    facts_like,
    header_of,
    position_of,
    raw_position,
    read_start,
    slice_facts,
)

#: Tags read when the full header parse fails (headers only, pixel data never touched).
_DISCOVER_TAGS = [
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "PatientID",
    "Modality",
    "SOPClassUID",
    "SeriesNumber",
    "SeriesDescription",
    *IDENTIFYING_TAGS,
]
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
DICOMDIR_REASON = "DICOMDIR index, not an image (the images it lists are read from the folders)"


@dataclass(frozen=True)
class Rejected:
    """A file that is not a readable DICOM image header (``reason`` names why; no PHI)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Member:
    """What grouping keeps of one DICOM file (its header is dropped at once: a folder may hold 100k files).
    ``series_uid`` and ``patient_id`` are raw header values: they never leave ``fmct.io``."""

    path: Path
    series_uid: str = field(repr=False)
    modality: str
    patient_id: str = field(repr=False)
    study_uid: str = field(repr=False)
    number: int | None
    description: str | None
    facts: SliceFacts | None = field(repr=False)


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, None)
    return "" if value is None else str(value).strip()


def _safe_text(ds, keyword: str) -> str:
    try:
        return _text(ds, keyword)
    except Exception:  # undecodable value counts as missing
        return ""


def _safe_description(ds: Any) -> str | None:
    try:
        return clean_description(ds)
    except Exception:  # an undecodable value counts as missing
        return None


def reject_reason(exc: Exception) -> str:
    """Why a file whose header read raised ``exc`` is rejected (names the failure, never a value)."""
    from pydicom.errors import InvalidDicomError

    if isinstance(exc, InvalidDicomError):
        return "not a DICOM file (no DICM prefix, no File Meta header)"
    if isinstance(exc, (EOFError, OSError)) and not isinstance(exc, FileNotFoundError):
        return f"unreadable DICOM header (truncated file?): {type(exc).__name__}"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return f"unreadable DICOM header: {type(exc).__name__}"


#: What :func:`_identity` is made from (the character set decodes PatientID).
_IDENTITY_KEYWORDS = ("SpecificCharacterSet", "SOPClassUID", "SeriesInstanceUID", "Modality", "PatientID",
                      "StudyInstanceUID", "SeriesNumber")  # fmt: skip


def _identity(ds: Any) -> tuple[str, str, str | None, str, str, str, int | None]:
    """``(SOP class, SeriesInstanceUID, why the UID is unreadable or None, Modality, PatientID,
    StudyInstanceUID, SeriesNumber)`` of ``ds``; the SOP class is File Meta's when the dataset has none.
    Raises when the SOP class cannot be decoded."""
    meta = getattr(ds, "file_meta", None)
    sop = _text(ds, "SOPClassUID") or (_text(meta, "MediaStorageSOPClassUID") if meta else "")
    try:
        uid, unreadable = _text(ds, "SeriesInstanceUID"), None
    except Exception as exc:  # a value that cannot be decoded
        uid, unreadable = "", type(exc).__name__
    return (sop, uid, unreadable, _safe_text(ds, "Modality"), _safe_text(ds, "PatientID"),
            _safe_text(ds, "StudyInstanceUID"), series_number(ds))  # fmt: skip


#: Every attribute that a file's memo key is made of: what its identity, cleaned description and slice facts
#: (but its position) are made from.
MEMO_KEYWORDS = tuple(dict.fromkeys((*SHARED_KEYWORDS, *_IDENTITY_KEYWORDS, *DESCRIPTION_KEYWORDS)))
#: At most this many memo entries are kept (emptied when full): a series shares one or a few keys, but files
#: whose remembered attributes all differ (per-slice rescale, say) would each add one (~3 kB).
MEMO_ENTRIES = 4096
_UNKNOWN = object()  # facts a memo entry cannot tell


@dataclass(frozen=True)
class _Shared:
    """What the files whose :data:`MEMO_KEYWORDS` hold the same bytes share: :func:`_identity`, the cleaned
    description, and slice facts but for position, pixel data offset and stamp (``facts``: those of the
    first such file, see :func:`fmct.io.dicom_slice.facts_like`; ``None`` with ``no_facts`` when such a file
    has none whatever its position, with ``no_facts`` False when that is not known)."""

    identity: tuple
    description: str | None
    facts: SliceFacts | None
    no_facts: bool


def _shared_facts(
    shared: _Shared, position: Any, offset: int | None, has_pixels: bool, stamp: tuple[int, int]
):
    """The slice facts of a file with ``shared``'s bytes, its ``position`` (``None``: unreadable), pixel data
    offset and stamp: what :func:`fmct.io.dicom_slice.slice_facts` gives, or ``_UNKNOWN``."""
    if offset is None or not has_pixels:
        return None
    if shared.facts is not None:
        return None if position is None else facts_like(shared.facts, position, offset, stamp)
    return None if shared.no_facts else _UNKNOWN


def read_member(path: Path, memo: dict | None = None) -> Member | Rejected:
    """``path``'s :class:`Member`, or why it is :class:`Rejected`. Never raises for a bad file.

    ``memo``: a dict the caller keeps from file to file, where what the files of a series share is remembered
    (:class:`_Shared`) under the undecoded bytes of :data:`MEMO_KEYWORDS` (:mod:`fmct.io.dicom_rawkey`): a
    file whose bytes match an earlier one's is read without pydicom datasets (:mod:`fmct.io.dicom_rawhead`),
    its position alone decoded. The record is the same with or without ``memo``."""
    head = stamp = key = None
    try:
        head, stamp = read_start(path)
    except Exception:  # the header read below decides, and words, any rejection
        pass
    if memo is not None and head is not None:
        raw = raw_head(head)
        if raw is None and head[128:132] == b"DICM" and len(head) < min(stamp[0], LONG_HEAD_BYTES):
            # maybe a header longer than the first read
            head, stamp = read_start(path, LONG_HEAD_BYTES)
            raw = raw_head(head)
        key = None if raw is None else key_of(raw.meta, raw.elements, MEMO_KEYWORDS)
        shared = memo.get(key) if key is not None else None
        if shared is not None:
            position = raw_position(raw.elements.get(POSITION_TAG))
            if position is not None or shared.facts is None:
                facts = _shared_facts(shared, position, raw.offset, True, stamp)
                if facts is not _UNKNOWN:
                    return _member(path, shared.identity, shared.description, facts)
    return _read_member(path, memo, head, stamp, key)


def _read_member(path: Path, memo: dict | None, head: bytes | None, stamp, key: tuple | None):
    """:func:`read_member` from pydicom's dataset of the header (``head``: its first bytes read by
    :func:`fmct.io.dicom_slice.read_start` with ``stamp``, or ``None``; ``key``: its memo key where its
    undecoded elements gave one). A file the full header parse fails on (no preamble, a broken sequence)
    is read for the few tags discovery needs (and nothing of it is remembered)."""
    try:
        if head is None:
            raise OSError("not read")
        ds, offset, has_pixels = header_of(path, head, stamp[0])
    except Exception:  # the tag-limited read below decides, and words, any rejection
        try:
            ds = read_dicom(path, stop_before_pixels=True, specific_tags=_DISCOVER_TAGS)
        except Exception as exc:  # every failure becomes a Rejected
            return Rejected(path, reject_reason(exc))
        memo = offset = None
        has_pixels = False
    if memo is not None and key is None:
        key = raw_key(ds, MEMO_KEYWORDS)
    shared = memo.get(key) if memo is not None and key is not None else None
    if shared is not None:
        facts = _shared_facts(shared, _position(ds), offset, has_pixels, stamp)
        if facts is not _UNKNOWN:
            return _member(path, shared.identity, shared.description, facts)
    try:
        identity = _identity(ds)
    except Exception as exc:  # a SOP class that cannot be decoded
        return Rejected(path, f"unreadable DICOM header: {type(exc).__name__}")
    description = _safe_description(ds)
    facts = slice_facts(ds, offset, has_pixels, stamp)
    if memo is not None and key is not None:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        no_facts = facts is None and offset is not None and has_pixels and _position(ds) is not None
        memo[key] = _Shared(identity, description, facts, no_facts)
    return _member(path, identity, description, facts)


def _position(ds: Any) -> Any:
    """:func:`fmct.io.dicom_slice.position_of`, ``None`` where it raises."""
    try:
        return position_of(ds)
    except Exception:  # the reader reports it
        return None


def _member(
    path: Path, identity: tuple, description: str | None, facts: SliceFacts | None
) -> Member | Rejected:
    """The :class:`Member` of ``path`` with ``identity`` (:func:`_identity`), or why it is rejected."""
    sop, uid, unreadable, modality, patient_id, study_uid, number = identity
    if sop == _DICOMDIR_SOP_CLASS or path.name.upper() == "DICOMDIR":
        return Rejected(path, DICOMDIR_REASON)
    if unreadable is not None:
        return Rejected(path, f"unreadable DICOM header: {unreadable}")
    if not uid:
        return Rejected(path, "DICOM file without SeriesInstanceUID (truncated or not an image?)")
    return Member(path, uid, modality, patient_id, study_uid, number, description, facts)


def read_chunk(
    paths: Sequence[Path], progress: Callable[[int, int], None] | None = None
) -> list[Member | Rejected]:
    """:func:`read_member` of each of ``paths``, in order, with one memo for all (the work of one worker task,
    or of discovery in one process); ``progress(read, total)`` every 64 files and at the end."""
    memo: dict = {}
    out: list[Member | Rejected] = []
    for i, p in enumerate(paths, 1):
        out.append(read_member(p, memo))
        if progress is not None and (i % 64 == 0 or i == len(paths)):
            progress(i, len(paths))
    return out
