"""Open one DICOM file, including files written without the 128-byte preamble.

Part 10 files start with a 128-byte preamble and ``DICM``; some PACS exports and old converters drop the
preamble (the file then starts straight with the File Meta group 0002, or with ``DICM``). pydicom reads
those only with ``force=True``, which would also "read" any junk file; here such a file is re-read with the
preamble put back in memory, and only when its first bytes look like a File Meta element (explicit VR
little endian, group 0002), bare or after ``DICM``.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

#: An explicit-VR little-endian element of group 0002: tag (0002,eeee) followed by a two-letter VR.
_META_START = re.compile(rb"\x02\x00[\x00-\xff]{2}[A-Z]{2}")


def preamble_missing(path: str | os.PathLike) -> int | None:
    """Offset at which a preamble-less DICOM file's data set starts (0, or 4 after a bare ``DICM``),
    or ``None`` when the first bytes do not look like one."""
    with open(path, "rb") as f:
        head = f.read(10)
    if head.startswith(b"DICM") and _META_START.match(head[4:10]):
        return 4
    if _META_START.match(head[:6]):
        return 0
    return None


def read_dicom(path: str | os.PathLike, **kwargs: Any) -> Any:
    """``pydicom.dcmread(path, **kwargs)`` that also accepts files without the 128-byte preamble.

    Raises pydicom's ``InvalidDicomError`` for a file that is neither a Part 10 file nor a preamble-less
    one with File Meta, and whatever pydicom raises for a broken one.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    kwargs.pop("force", None)
    try:
        return pydicom.dcmread(path, force=False, **kwargs)
    except InvalidDicomError:
        offset = preamble_missing(path)
        if offset is None:
            raise
    with open(path, "rb") as f:
        f.seek(offset)
        body = f.read()
    # put the preamble back in memory: pydicom then parses (and validates) it as an ordinary Part 10 file
    ds = pydicom.dcmread(io.BytesIO(bytes(128) + b"DICM" + body), force=False, **kwargs)
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise InvalidDicomError("File Meta without a TransferSyntaxUID")
    ds.filename = os.fspath(path)
    return ds
