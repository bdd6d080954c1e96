"""fmct.io.dicom_rawhead: a header's undecoded elements exactly as pydicom's dcmread(stop_before_pixels=True)
reads them, or None wherever dcmread would do more than run its element parser."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import convert_raw_data_element
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from fmct.io.dicom_rawhead import raw_head
from fmct.io.dicom_slice import header_at

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "dcm_qa_ct"


def _dcmread(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return header_at(io.BytesIO(data))


def _assert_as_dcmread_reads(data: bytes) -> None:
    """raw_head(data) holds what dcmread reads of ``data``: the same elements in the same order (undecoded,
    byte for byte), File Meta values that decode to dcmread's, the same pixel data offset."""
    raw = raw_head(data)
    assert raw is not None
    ds, offset, has_pixels = _dcmread(data)
    assert has_pixels and raw.offset == offset
    body = dict(ds.items())
    assert list(raw.elements) == list(body)
    for tag, elem in body.items():  # dcmread decodes the character set at once
        mine = raw.elements[tag]
        assert (mine == elem) if tag != 0x00080005 else (convert_raw_data_element(mine).value == elem.value)
    assert list(raw.meta) == list(ds.file_meta.keys())
    for tag, elem in raw.meta.items():
        assert convert_raw_data_element(elem).value == ds.file_meta[tag].value, hex(tag)


def _written(ds, path: Path, **kwargs) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True, **kwargs)
    return path.read_bytes()


@pytest.mark.parametrize("big_endian", [False, True])
def test_plain_ct_slices_read_as_dcmread_reads_them(factory, big_endian):
    for path in factory.ct(n=3, big_endian=big_endian).files:
        _assert_as_dcmread_reads(path.read_bytes())


def test_implicit_vr_and_compressed_slices_read_as_dcmread_reads_them(factory, tmp_path):
    s = factory.ct(n=2)
    implicit = pydicom.dcmread(s.files[0])
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    _assert_as_dcmread_reads(_written(implicit, tmp_path / "implicit.dcm", implicit_vr=True))
    rle = pydicom.dcmread(s.files[1])
    rle.compress(RLELossless)
    _assert_as_dcmread_reads(_written(rle, tmp_path / "rle.dcm"))


def test_real_slices_read_as_dcmread_reads_them():
    if not REAL.is_dir():
        pytest.skip(f"{REAL} not present")
    images = 0
    for path in sorted(p for p in REAL.rglob("*") if p.is_file()):
        data = path.read_bytes()
        try:
            has_pixels = _dcmread(data)[2]
        except Exception:  # not DICOM (README, LICENSE)
            has_pixels = False
        assert (raw_head(data) is not None) == has_pixels, path
        if has_pixels:
            _assert_as_dcmread_reads(data)
            images += 1
    assert images >= 120  # every image: CT slices, scouts, dose screens (not the DICOMDIR indexes)


def test_any_file_either_reads_as_dcmread_reads_it_or_is_left_to_dcmread():
    """pydicom's own test files: every encoding, broken and odd files (deflated, no meta, big endian,
    truncated, undefined-length private sequences, reports without pixels)."""
    taken = 0
    for path in sorted(PYDICOM_FILES.glob("*.dcm")):
        data = path.read_bytes()
        if raw_head(data) is not None:
            _assert_as_dcmread_reads(data)
            taken += 1
    assert taken >= 40
    for name in ("image_dfl.dcm", "no_meta.dcm", "ExplVR_BigEndNoMeta.dcm", "meta_missing_tsyntax.dcm",
                 "test-SR.dcm", "rtplan_truncated.dcm"):  # fmt: skip
        assert raw_head((PYDICOM_FILES / name).read_bytes()) is None, name


def test_a_header_longer_than_the_bytes_read_is_left_to_dcmread(factory):
    data = factory.ct(n=2).files[0].read_bytes()
    _ds, offset, _ = _dcmread(data)
    assert raw_head(data[: offset + 12]) is not None  # up to the pixel data's tag, VR and length
    for cut in (offset + 11, offset + 4, offset - 10, 300, 140, 10):
        assert raw_head(data[:cut]) is None


def test_a_data_set_not_encoded_as_its_transfer_syntax_says_is_left_to_dcmread(factory):
    """dcmread switches to the encoding it finds (with a warning): raw_head does not guess."""
    from pydicom.filewriter import write_dataset, write_file_meta_info

    ds = pydicom.dcmread(factory.ct(n=2).files[0])
    meta = ds.file_meta
    meta.TransferSyntaxUID = ImplicitVRLittleEndian  # but the data set below is written explicit VR
    fp = io.BytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    body = pydicom.filebase.DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    data = fp.getvalue() + body.getvalue()
    assert raw_head(data) is None
    with pytest.warns(UserWarning, match="Expected implicit VR, but found explicit VR"):
        header_at(io.BytesIO(data))


def test_command_set_elements_are_left_to_dcmread(factory):
    data = factory.ct(n=2).files[0].read_bytes()
    raw = raw_head(data)
    start = 132 + 12 + int.from_bytes(data[140:144], "little")  # after the File Meta group
    assert raw is not None and start < raw.offset
    command = (0).to_bytes(4, "little") + (4).to_bytes(4, "little") + (0).to_bytes(4, "little")
    assert raw_head(data[:start] + command + data[start:]) is None  # (0000,0000) implicit VR, UL 0
