"""Discovery's slice facts (fmct.io.dicom_slice): the reader takes geometry, rescale and the pixel data's
place from them instead of parsing every header again, and gets exactly what its own parse gives."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from fmct.io.dicom import discover, read_series
from fmct.io.dicom_frames import frames_of
from fmct.io.dicom_pixels import read_native16
from fmct.io.errors import InvalidScan

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "dcm_qa_ct"
REAL_SERIES = ["Philips/S21610/S3010", "Philips/S21570/S2010", "GE"]


def _only(folder):
    found = discover([folder])
    assert len(found.series) == 1
    return found.series[0]


def _same_volume(ref) -> None:
    """``read_series`` with the facts == without them (every header parsed by the reader)."""
    fast, slow = read_series(ref), read_series(replace(ref, facts=None))
    assert fast.array.dtype == slow.array.dtype
    np.testing.assert_array_equal(fast.array, slow.array)
    np.testing.assert_array_equal(fast.affine, slow.affine)
    assert fast.meta == slow.meta


def _check_facts_match_pydicom(ref) -> None:
    """Every file's facts: the frame ``frames_of`` gives and stored values equal to pydicom's pixel_array."""
    assert ref.facts is not None and len(ref.facts) == len(ref.files)
    for i, (path, facts) in enumerate(zip(ref.files, ref.facts, strict=True)):
        assert facts is not None, path
        ds = pydicom.dcmread(path)
        (frame,) = frames_of(ds, i)
        assert facts.frame.file_index == i
        np.testing.assert_array_equal(facts.frame.position, frame.position)
        np.testing.assert_array_equal(facts.frame.orientation, frame.orientation)
        assert (facts.frame.slope, facts.frame.intercept) == (frame.slope, frame.intercept)
        assert (facts.frame.rows, facts.frame.cols, facts.frame.pixel_spacing) == (
            frame.rows,
            frame.cols,
            frame.pixel_spacing,
        )
        raw = read_native16(path, facts.offset, facts.layout, frame.rows, frame.cols, stamp=facts.stamp)
        np.testing.assert_array_equal(raw, ds.pixel_array)


@pytest.mark.parametrize("big_endian", [False, True])
def test_facts_give_pydicoms_pixels_and_the_same_volume(factory, big_endian):
    s = factory.ct(n=12, rescale=[(1.0, -1024.0), (2.0, -1000.0)], big_endian=big_endian)
    ref = _only(s.folder)
    _check_facts_match_pydicom(ref)
    _same_volume(ref)
    np.testing.assert_allclose(read_series(ref).array, s.hu, atol=0.5)


def test_facts_on_12_bit_signed_pixels(factory):
    s = factory.ct(n=10)
    for f in s.files:  # 12 bits stored, signed: sign-extended from bit 11 as pydicom does
        ds = pydicom.dcmread(f)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.save_as(f, enforce_file_format=True)
    ref = _only(s.folder)
    _check_facts_match_pydicom(ref)
    _same_volume(ref)


@pytest.mark.parametrize("sub", REAL_SERIES)
def test_facts_on_real_series(sub):
    folder = REAL / sub
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    ref = _only(folder)
    _check_facts_match_pydicom(ref)
    _same_volume(ref)


def test_compressed_files_have_no_facts_and_still_read(factory):
    s = factory.ct(n=10)
    for f in s.files[:4]:  # a mixed series: RLE files go through pydicom's decoders
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f, enforce_file_format=True)
    ref = _only(s.folder)
    compressed = {str(f) for f in s.files[:4]}
    for path, facts in zip(ref.files, ref.facts, strict=True):
        assert (facts is None) == (str(path) in compressed)
    _same_volume(ref)
    np.testing.assert_allclose(read_series(ref).array, s.hu, atol=0.5)


def test_odd_files_are_left_to_the_reader_and_named(factory):
    s = factory.ct(n=10)
    bad = sorted(s.files)[2]
    ds = pydicom.dcmread(bad)
    del ds.ImagePositionPatient
    ds.save_as(bad, enforce_file_format=True)
    ref = _only(s.folder)
    assert ref.facts[ref.files.index(bad)] is None
    with pytest.raises(InvalidScan) as err:
        read_series(ref)
    assert err.value.reason == f"{s.folder.name}/{bad.name}: missing ImagePositionPatient"


def test_truncated_pixel_data_names_the_file(factory):
    s = factory.ct(n=10)
    bad = sorted(s.files)[4]
    data = bad.read_bytes()
    bad.write_bytes(data[:-100])
    ref = _only(s.folder)
    assert ref.facts[ref.files.index(bad)] is not None  # the header is fine: the pixel bytes are short
    with pytest.raises(InvalidScan) as err:
        read_series(ref)
    assert err.value.reason.startswith(f"{s.folder.name}/{bad.name}: pixel data truncated (")


def test_truncated_after_discovery_names_the_file(factory):
    s = factory.ct(n=10)
    ref = _only(s.folder)
    bad = ref.files[5]
    bad.write_bytes(bad.read_bytes()[:-100])  # changed between discovery and reading
    with pytest.raises(InvalidScan) as err:
        read_series(ref)
    assert err.value.reason.startswith(f"{s.folder.name}/{bad.name}: pixel data truncated (")


def test_file_changed_after_discovery_is_read_again(factory):
    s = factory.ct(n=10)
    ref = _only(s.folder)
    path = ref.files[3]
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "LO", "a longer header moves the pixel data")  # private element
    ds.PixelData = (ds.pixel_array + 7).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse-clock file system
    vol = read_series(ref)
    fresh = read_series(_only(s.folder))
    np.testing.assert_array_equal(vol.array, fresh.array)
    pos = np.argsort([float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in ref.files])
    k = int(np.flatnonzero(pos == 3)[0])
    np.testing.assert_allclose(vol.array[:, :, k], s.hu[:, :, k] + 7, atol=0.5)


class _Recorder:
    """A dataset that records every attribute read from it."""

    def __init__(self, ds) -> None:
        self._ds, self.seen = ds, set()

    def get(self, keyword, default=None):
        self.seen.add(keyword)
        return self._ds.get(keyword, default)

    def __contains__(self, keyword) -> bool:
        self.seen.add(keyword)
        return keyword in self._ds

    def __getattr__(self, name):
        self.seen.add(name)
        return getattr(self._ds, name)


def test_facts_are_made_from_the_shared_attributes_and_the_position_only(factory):
    """The memo keys facts by the bytes of SHARED_KEYWORDS: the facts must read nothing else (but the
    position, decoded per file, and the transfer syntax, in the key too)."""
    from fmct.io.dicom_slice import SHARED_KEYWORDS, _parse_facts, header_at

    path = factory.ct(n=2).files[0]
    with open(path, "rb") as fh:
        ds, offset, has_pixels = header_at(fh)
    recorder = _Recorder(ds)
    assert _parse_facts(recorder, offset, has_pixels, (0, 0), 0) is not None
    assert recorder.seen - {"ImagePositionPatient", "file_meta"} <= set(SHARED_KEYWORDS)


@pytest.mark.parametrize("head_bytes", [64 * 1024, 700, 200])
def test_read_head_gives_what_a_parse_of_the_file_gives(factory, monkeypatch, head_bytes):
    """The header parsed from the file's first bytes, or from the file where it runs past them."""
    import fmct.io.dicom_slice as dicom_slice

    monkeypatch.setattr(dicom_slice, "HEAD_BYTES", head_bytes)
    for big_endian in (False, True):
        path = factory.ct(n=2, big_endian=big_endian).files[0]
        head, stamp = dicom_slice.read_start(path)
        ds, offset, has_pixels = dicom_slice.header_of(path, head, stamp[0])
        with open(path, "rb") as fh:
            ds_file, offset_file, has_pixels_file = dicom_slice.header_at(fh)
        assert (offset, has_pixels) == (offset_file, has_pixels_file) and has_pixels
        assert offset > 200 and ds == ds_file
        assert stamp == (path.stat().st_size, path.stat().st_mtime_ns)


@pytest.mark.parametrize(
    "text",
    ["-12.5\\-20\\30", " 1.5 \\ -2\\3e1 ", "1\\2\\3\0", "+1.\\.5\\-0", "1_0\\2\\3", "nan\\1\\2", "1\\2",
     "1\\2\\3\\4", "1\\\\3", "a\\b\\c", "1e999\\0\\0", ""],
)  # fmt: skip
def test_raw_position_is_what_pydicom_decodes(text):
    """An undecoded position gives pydicom's DS decoding followed by floats(), or None for pydicom to say."""
    from pydicom.dataelem import RawDataElement

    from fmct.io.dicom_frames import floats
    from fmct.io.dicom_slice import raw_position

    raw = RawDataElement(0x00200032, "DS", len(text), text.encode("latin-1"), 0, False, True)
    ds = pydicom.Dataset()
    ds[0x00200032] = raw
    mine = raw_position(raw)
    try:
        theirs = floats(ds.get("ImagePositionPatient", None), 3, "ImagePositionPatient")
    except (InvalidScan, ValueError):
        assert mine is None
        return
    assert mine is not None and mine.dtype == theirs.dtype and mine.tolist() == theirs.tolist()
