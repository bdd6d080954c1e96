"""Decode one DICOM frame's stored pixel values and rescale it to HU into a preallocated slot (int16 when
the rescale is integer and the values fit, so a scan is never held as float32 whole; float32 otherwise).

Uncompressed 16-bit grayscale (the common CT case, either byte order) is read straight from the
PixelData bytes with ``numpy.frombuffer``; anything else (JPEG lossless, JPEG-LS, JPEG 2000, RLE via the
pylibjpeg plugins, 8/32-bit, multi-frame) goes through pydicom's ``pixel_array``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fmct.io.dicom_frames import uid_name
from fmct.io.errors import InvalidScan


def _transfer_syntax(ds):
    from pydicom.uid import ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID", None) if meta is not None else None
    return uid if uid is not None else ImplicitVRLittleEndian


@dataclass(frozen=True)
class Native16:
    """How an uncompressed 16-bit single-sample frame's stored values sit in its PixelData bytes."""

    little_endian: bool
    implicit_vr: bool
    signed: bool
    bits_stored: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(("<" if self.little_endian else ">") + ("i2" if self.signed else "u2"))


def native16_layout(ds) -> Native16 | None:
    """The :class:`Native16` layout of ``ds``'s pixel data, or ``None`` when it needs pydicom's decoders
    (encapsulated transfer syntax, not 16 bits allocated, more than one sample per pixel)."""
    ts = _transfer_syntax(ds)
    if ts.is_encapsulated:
        return None
    if int(ds.get("BitsAllocated", 0) or 0) != 16 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    return Native16(
        little_endian=bool(ts.is_little_endian),
        implicit_vr=bool(ts.is_implicit_VR),
        signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
        bits_stored=int(ds.get("BitsStored", 16) or 16),
    )


def _fast_native16(ds, rows: int, cols: int) -> np.ndarray | None:
    """Stored values ``(rows, cols)`` of an uncompressed 16-bit single-sample frame, else None."""
    layout = native16_layout(ds)
    if layout is None:
        return None
    data = ds.PixelData
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    need = rows * cols * 2
    if len(data) < need:
        raise InvalidScan(f"pixel data truncated ({len(data)} of {need} bytes)")
    return _native16_array(data, layout, rows, cols)


def _native16_array(data, layout: Native16, rows: int, cols: int, in_place: bool = False) -> np.ndarray:
    """``(rows, cols)`` stored values from at least ``rows * cols * 2`` bytes of native 16-bit pixel data
    (``in_place``: ``data`` is a writable scratch buffer that the unused high bits may be cleared in)."""
    arr = np.frombuffer(data, dtype=layout.dtype, count=rows * cols).reshape(rows, cols)
    stored = layout.bits_stored
    if 0 < stored < 16:
        shift = 16 - stored
        if layout.signed:  # sign-extend from BitsStored
            arr = (arr.astype(np.int16) << shift) >> shift
        elif in_place:  # clear the unused high bits
            np.bitwise_and(arr, np.uint16((1 << stored) - 1), out=arr)
        else:
            arr = arr & np.uint16((1 << stored) - 1)
    return arr


#: PixelData, FloatPixelData, DoubleFloatPixelData: the tags `dcmread(stop_before_pixels=True)` stops at.
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}


def is_pixel_tag(four: bytes, little: bool) -> bool:
    """Whether the 4 bytes ``four`` are the tag of a pixel data element (in the byte order ``little`` says);
    fewer bytes are not."""
    if len(four) < 4:
        return False
    order = "little" if little else "big"
    return (int.from_bytes(four[:2], order) << 16 | int.from_bytes(four[2:4], order)) in PIXEL_TAGS


def pixel_tag_at(fh, ds) -> bool:
    """Whether the next element of ``fh`` (positioned by ``dcmread(..., stop_before_pixels=True)``) is the
    pixel data; the file position is left unchanged."""
    pos = fh.tell()
    head = fh.read(4)
    fh.seek(pos)
    return is_pixel_tag(head, _transfer_syntax(ds).is_little_endian)


def read_native16(
    path,
    offset: int,
    layout: Native16,
    rows: int,
    cols: int,
    buffer: bytearray | None = None,
    stamp: tuple[int, int] | None = None,
) -> np.ndarray | None:
    """Stored values ``(rows, cols)`` of an uncompressed 16-bit single-frame file, read straight from the
    PixelData element at ``offset`` (where a header-only ``dcmread`` stopped), so the scan's pixel bytes are
    never all held at once. With ``buffer`` (at least ``rows * cols * 2`` bytes, reused from file to file:
    no fresh pages per slice) the result is a view of it, valid until the next call with the same buffer.

    ``None`` (read the file with pydicom instead) when no PixelData element of defined length starts at
    ``offset``, or when ``stamp`` (``(size in bytes, mtime in ns)`` of the file when its header was read)
    no longer matches the file. Raises :class:`InvalidScan` for truncated pixel data.
    """
    order = "little" if layout.little_endian else "big"
    with open(path, "rb") as fh:
        if stamp is not None:
            st = os.fstat(fh.fileno())
            if (st.st_size, st.st_mtime_ns) != stamp:
                return None
        fh.seek(offset)
        head = fh.read(12)
        if len(head) < 8 or (int.from_bytes(head[:2], order), int.from_bytes(head[2:4], order)) != (
            0x7FE0,
            0x0010,
        ):
            return None
        if not layout.implicit_vr and head[4:6] in _LONG_VRS:
            length, start = int.from_bytes(head[8:12], order), offset + 12
        elif not layout.implicit_vr:
            length, start = int.from_bytes(head[6:8], order), offset + 8
        else:
            length, start = int.from_bytes(head[4:8], order), offset + 8
        if length == 0xFFFFFFFF:  # undefined length: encapsulated after all
            return None
        need = rows * cols * 2
        fh.seek(start)
        if buffer is not None and len(buffer) >= need:
            data = memoryview(buffer)[: fh.readinto(memoryview(buffer)[: min(length, need)])]
        else:
            data = fh.read(min(length, need))
    if len(data) < need:
        raise InvalidScan(f"pixel data truncated ({len(data)} of {need} bytes)")
    return _native16_array(data, layout, rows, cols, in_place=buffer is not None)


def stored_pixels(ds, frame: int | None, rows: int, cols: int, cache: dict) -> np.ndarray:
    """Stored (pre-rescale) values ``(rows, cols)`` of ``frame`` (``None`` = single-frame file).

    ``cache`` holds decoded multi-frame arrays keyed by ``id(ds)`` so each file is decoded once (the
    caller clears it when done).
    Raises :class:`InvalidScan` for truncated or undecodable pixel data.
    """
    if frame is None:
        fast = _fast_native16(ds, rows, cols)
        if fast is not None:
            return fast
    key = id(ds)
    arr = cache.get(key) if frame is not None else None
    if arr is None:
        ts = _transfer_syntax(ds)
        try:
            arr = ds.pixel_array
        except Exception as exc:  # decoder failures of any kind (truncated stream, missing plugin, ...)
            raise InvalidScan(f"cannot decode pixel data ({uid_name(ts)}): {type(exc).__name__}") from exc
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise InvalidScan("colour pixel data (SamplesPerPixel != 1), not a grayscale CT image")
        if frame is not None:  # multi-frame files are decoded once, all frames at a time
            cache[key] = arr
    if frame is None:
        if arr.ndim != 2:
            raise InvalidScan(f"pixel array has shape {arr.shape}, expected one {rows}x{cols} frame")
        out = arr
    else:
        if arr.ndim == 2 and frame == 0:
            out = arr
        elif arr.ndim == 3 and frame < arr.shape[0]:
            out = arr[frame]
        else:
            raise InvalidScan(f"pixel array has shape {arr.shape}, frame {frame} missing")
    if out.shape != (rows, cols):
        raise InvalidScan(f"decoded frame is {out.shape[0]}x{out.shape[1]}, header says {rows}x{cols}")
    return out


def int16_rescale(slope: float, intercept: float) -> bool:
    """Whether stored integers rescale to integer HU (integer slope and intercept), so an int16 slot can
    hold them exactly when they fit."""
    return (
        float(slope).is_integer()
        and float(intercept).is_integer()
        and abs(slope) < 2**15
        and abs(intercept) < 2**16
    )


def _fits_int16(raw: np.ndarray, slope: int, intercept: int) -> bool:
    """Whether ``raw * slope + intercept`` stays within int16, from the dtype's range when that suffices."""
    if raw.dtype.kind not in "iu" or raw.dtype.itemsize > 2:
        return False
    info = np.iinfo(raw.dtype)
    ends = (info.min * slope + intercept, info.max * slope + intercept)
    if min(ends) >= -(2**15) and max(ends) < 2**15:
        return True
    lo, hi = int(raw.min()), int(raw.max())
    ends = (lo * slope + intercept, hi * slope + intercept)
    return min(ends) >= -(2**15) and max(ends) < 2**15


def rescale_into(dst: np.ndarray, raw: np.ndarray, slope: float, intercept: float) -> bool:
    """``dst[...] = raw * slope + intercept`` without temporaries beyond ``dst``.

    ``dst`` is a float32 slot, or an int16 slot when :func:`int16_rescale` holds for the series (exact:
    the same values as float32). Returns False, leaving ``dst`` unspecified, when an int16 ``dst`` cannot
    hold this frame's values (the caller then switches to float32).
    """
    if dst.dtype == np.int16:
        s, b = int(slope), int(intercept)
        if not _fits_int16(raw, s, b):
            return False
        # int16 arithmetic wraps modulo 2**16, which is exact whenever the true result fits (checked above)
        src = raw.view(np.int16) if raw.dtype == np.uint16 else raw
        wrap = lambda v: np.int16(((v + 2**15) % 2**16) - 2**15)  # noqa: E731
        if s == 1:
            np.add(src, wrap(b), out=dst, casting="unsafe")
        else:
            np.multiply(src, wrap(s), out=dst, casting="unsafe")
            if b:
                np.add(dst, wrap(b), out=dst)
        return True
    if slope == 1.0:
        np.copyto(dst, raw, casting="unsafe")
    else:
        np.multiply(raw, np.float32(slope), out=dst, casting="unsafe")
    if intercept != 0.0:
        np.add(dst, np.float32(intercept), out=dst)
    return True
