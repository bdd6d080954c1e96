"""A Part 10 header's top-level elements, undecoded, as ``pydicom.dcmread(stop_before_pixels=True)`` reads
them, without building pydicom datasets.

``dcmread`` spends about half of a CT header's time around its element parser (File Meta and data set
objects, validation, character sets): discovery needs the datasets only for the first file of a series,
and for the others only the undecoded bytes (to recognise what the series shares, see
:mod:`fmct.io.dicom_rawkey`) and the slice position. :func:`raw_head` runs pydicom's own element parser
(``pydicom.filereader.data_element_generator``) exactly as ``dcmread`` runs it, for the encodings where
``dcmread`` itself does nothing else before it (File Meta in explicit VR little endian, no command set, one of
the standard transfer syntaxes, the data set encoded as its transfer syntax says, no warnings); anything
else gives ``None`` and the caller reads the file with ``dcmread``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from fmct.io.dicom_pixels import PIXEL_TAGS, is_pixel_tag
from fmct.io.dicom_rawkey import TRANSFER_SYNTAX_TAG

_IMPLICIT_LE, _EXPLICIT_LE, _EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass(frozen=True)
class RawHead:
    """The undecoded top-level elements of a header (pydicom ``RawDataElement``, or a ``DataElement`` for a
    sequence of undefined length, as ``dcmread`` leaves them), by tag.

    Attributes:
        meta: File Meta (group 0002) elements.
        elements: data set elements before the pixel data.
        offset: byte offset of the pixel data element in the file.
    """

    meta: dict[int, Any]
    elements: dict[int, Any]
    offset: int


def _not_meta(tag: int, vr: str | None, length: int) -> bool:
    return tag >> 16 != 2


def _at_pixels(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_TAGS


def _uppercase_vr(two: bytes) -> bool:
    """pydicom's test of whether an element's VR bytes are explicit (two letters A-Z)."""
    return len(two) == 2 and 0x40 < two[0] < 0x5B and 0x40 < two[1] < 0x5B


def _plain_meta(meta: dict[int, Any]) -> bool:
    """Whether ``dcmread`` does nothing with File Meta elements ``meta`` but decode its group length (the
    first element, 4 bytes of UL: cannot fail) and its transfer syntax (see :func:`_encoding`)."""
    first = next(iter(meta.values()), None)
    if first is None or first.tag != 0x00020000 or first.VR != "UL" or len(first.value or b"") != 4:
        return False
    return all(getattr(e, "VR", None) not in (None, "UN", "SQ") for e in meta.values())


def _encoding(meta: dict[int, Any]) -> tuple[bool, bool] | None:
    """``(implicit VR, little endian)`` that ``dcmread`` reads the data set with, for a transfer syntax given
    byte for byte as a registered UID where ``dcmread`` does nothing but pick these (``None``: deflated,
    private, missing or unusual transfer syntax)."""
    from pydicom.uid import UID, PrivateTransferSyntaxes

    elem = meta.get(TRANSFER_SYNTAX_TAG)
    raw = getattr(elem, "value", None)
    if not isinstance(raw, bytes) or getattr(elem, "VR", None) != "UI":
        return None
    text = raw[:-1] if raw.endswith(b"\0") else raw
    if not text or not text.replace(b".", b"").isdigit():
        return None
    uid = text.decode("ascii")
    if uid == _IMPLICIT_LE:
        return True, True
    if uid == _EXPLICIT_LE:
        return False, True
    if uid == _EXPLICIT_BE:
        return False, False
    if uid == _DEFLATED or uid in PrivateTransferSyntaxes or not UID(uid).is_encapsulated:
        return None
    return False, True  # encapsulated pixel data: the data set is explicit VR little endian


def raw_head(head: bytes) -> RawHead | None:
    """The :class:`RawHead` of a Part 10 file whose first bytes are ``head``, or ``None`` where this cannot
    give exactly what ``dcmread(stop_before_pixels=True)`` reads (see the module doc), or where the pixel
    data element does not start within ``head``. Never raises."""
    from pydicom.filereader import data_element_generator

    if head[128:132] != b"DICM" or not _uppercase_vr(head[136:138]):
        return None
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            fp = io.BytesIO(head)
            fp.seek(132)
            meta = {e.tag: e for e in data_element_generator(fp, False, True, stop_when=_not_meta)}
            if not _plain_meta(meta):
                return None
            encoding = _encoding(meta)
            start = fp.tell()
            first = head[start : start + 6]
            if encoding is None or len(first) < 6 or first[:2] == b"\0\0":  # command set (0000,eeee)
                return None
            implicit, little = encoding
            if _uppercase_vr(first[4:6]) == implicit:  # dcmread would switch VR encoding (with a warning)
                return None
            elements = {e.tag: e for e in data_element_generator(fp, implicit, little, stop_when=_at_pixels)}
            offset = fp.tell()
        at_pixels = is_pixel_tag(head[offset : offset + 4], little)
    except Exception:  # dcmread decides, and words, what is wrong
        return None
    if shown or not at_pixels:
        return None
    return RawHead(meta=meta, elements=elements, offset=offset)
