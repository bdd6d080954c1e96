"""One file's part in discovery (fmct.io.dicom_members): the record read with the memo of what a series
shares equals the one read afresh, whatever the file."""

from __future__ import annotations

from pathlib import Path

import fmct.io.dicom_members as members
from fmct.io.dicom_members import Member, Rejected


def _member_key(rec, facts_key) -> tuple:
    if isinstance(rec, Rejected):
        return ("rejected", rec.path, rec.reason)
    return (rec.path, rec.series_uid, rec.modality, rec.patient_id, rec.study_uid, rec.number,
            rec.description, facts_key(rec.facts))  # fmt: skip


def test_what_a_series_shares_is_remembered_without_changing_a_record(mixed, facts_key):
    """``read_chunk`` remembers facts and descriptions from file to file: every record equals the one read
    with no memory."""
    from fmct.io.dicom_discover import iter_files

    files = [p for p in iter_files(mixed) if not p.name.endswith((".nii", ".nii.gz"))]
    remembered = members.read_chunk(files)
    fresh = [members.read_member(p) for p in files]
    assert [_member_key(r, facts_key) for r in remembered] == [_member_key(r, facts_key) for r in fresh]
    assert sum(isinstance(r, Member) and r.facts is not None for r in fresh) >= 28


def _written(path: Path, patient: str, charset: str = "ISO_IR 100", series: str = "1.2.3.4") -> Path:
    """A tiny CT slice with a German description and ``patient``'s name."""
    import warnings

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID, ds.file_meta.MediaStorageSOPClassUID = (
        ExplicitVRLittleEndian,
        CTImageStorage,
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID, ds.Modality, ds.SeriesInstanceUID = CTImageStorage, "CT", series
    ds.SpecificCharacterSet, ds.SeriesDescription, ds.PatientName = charset, "Kopf Müller 5mm", patient
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.SamplesPerPixel = 16, 1
    ds.PixelData = bytes(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).SeriesDescription == "Kopf Müller 5mm"
    return path


def test_a_remembered_description_equals_a_fresh_one(tmp_path, facts_key):
    """Files with the same description bytes share one memo entry; other identifying bytes (another
    patient) or another character set get their own, so each result is what a fresh cleaning gives."""
    cases = [("MÜLLER^ANNA", "ISO_IR 100"), ("MÜLLER^ANNA", "ISO_IR 100"), ("SCHMIDT^ANNA", "ISO_IR 100"),
             ("MÜLLER^ANNA", "ISO_IR 192"), ("MÜLLER^ANNA", "ISO_IR 100")]  # fmt: skip
    files = [_written(tmp_path / f"{i}.dcm", patient, charset) for i, (patient, charset) in enumerate(cases)]
    memo: dict = {}
    remembered = [members.read_member(p, memo) for p in files]
    assert [_member_key(r, facts_key) for r in remembered] == [
        _member_key(members.read_member(p), facts_key) for p in files
    ]
    assert [r.description for r in remembered] == ["Kopf * 5mm", "Kopf * 5mm", "Kopf Müller 5mm",
                                                   "Kopf * 5mm", "Kopf * 5mm"]  # fmt: skip
    assert len(memo) == 3


def test_odd_files_read_with_a_memo_as_without(tmp_path, facts_key):
    """pydicom's own test files (every encoding, compressed, broken, no meta, DICOMDIR, reports), each three
    times under other names: the copies take the memo's path, and every record is what a fresh read gives."""
    import shutil

    import pydicom

    source = Path(pydicom.__file__).parent / "data" / "test_files"
    files = []
    for path in sorted(source.glob("*.dcm")) + [source / "dicomdirtests" / "DICOMDIR"]:
        for k in range(3):
            files.append(shutil.copy(path, tmp_path / f"{path.stem}_{k}{path.suffix}"))
    files = [Path(p) for p in files]
    memo: dict = {}
    remembered = members.read_chunk(files)
    fresh = [members.read_member(p) for p in files]
    assert [_member_key(r, facts_key) for r in remembered] == [_member_key(r, facts_key) for r in fresh]
    assert sum(isinstance(r, Member) for r in fresh) >= 100
    assert sum(isinstance(r, Rejected) for r in fresh) >= 6
    assert members.read_member(files[0], memo) is not None and len(memo) == 1


def _save(ds, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)


def test_positions_the_memo_path_cannot_read_are_read_by_pydicom(factory, facts_key):
    """A series whose first file's position is unreadable, and files whose position pydicom decodes but
    the memo's path does not (another VR, odd spacing): every record equals a fresh read."""
    import pydicom

    s = factory.ct(n=8)
    files = sorted(s.files)
    for i, value in ((0, b"1\\x\\3"), (3, b" 1.5 \\ -2\\3e1 ")):  # written over the value's bytes
        data = files[i].read_bytes()
        elem = pydicom.dcmread(files[i]).get_item(0x00200032)
        old = data[elem.value_tell : elem.value_tell + elem.length]
        files[i].write_bytes(data.replace(old, value.ljust(len(old))))
    ds = pydicom.dcmread(files[5])
    raw = ds["ImagePositionPatient"].value
    del ds.ImagePositionPatient
    ds.add_new(0x00200032, "UN", "\\".join(str(v) for v in raw).encode())
    _save(ds, files[5])
    remembered = members.read_chunk(files)
    fresh = [members.read_member(p) for p in files]
    assert [_member_key(r, facts_key) for r in remembered] == [_member_key(r, facts_key) for r in fresh]
    assert remembered[0].facts is None and all(r.facts is not None for r in remembered[1:])
    assert remembered[3].facts.frame.position.tolist() == [1.5, -2.0, 30.0]


def test_one_memo_key_covers_everything_remembered():
    """One key a file serves the facts, identity and description memos: it must hold every attribute each
    is made from."""
    from fmct.io.dicom_describe import DESCRIPTION_KEYWORDS
    from fmct.io.dicom_slice import SHARED_KEYWORDS

    needed = {*SHARED_KEYWORDS, *members._IDENTITY_KEYWORDS, *DESCRIPTION_KEYWORDS}
    assert set(members.MEMO_KEYWORDS) == needed
    assert len(members.MEMO_KEYWORDS) == len(needed)


def test_identity_reads_only_its_keywords(factory, recording_dataset):
    """Discovery remembers a file's identity by the bytes of _IDENTITY_KEYWORDS: nothing else may be read
    (but the File Meta, in the key too)."""
    import pydicom

    ds, seen = recording_dataset(pydicom.dcmread(factory.ct(n=2).files[0], stop_before_pixels=True))
    sop, uid, unreadable, modality, *_ = members._identity(ds)
    assert sop and uid and unreadable is None and modality == "CT"
    assert seen and seen <= set(members._IDENTITY_KEYWORDS)


def test_a_full_memo_is_emptied_and_refilled(factory, monkeypatch, facts_key):
    """Slices whose rescale all differ each add an entry: the memo stays bounded, the records unchanged."""
    monkeypatch.setattr(members, "MEMO_ENTRIES", 3)
    files = sorted(factory.ct(n=10, rescale=[(1.0, -1000.0 - k) for k in range(10)]).files)
    memo: dict = {}
    remembered = [members.read_member(p, memo) for p in files]
    assert 1 <= len(memo) <= 3
    assert [_member_key(r, facts_key) for r in remembered] == [
        _member_key(members.read_member(p), facts_key) for p in files
    ]


def test_headers_longer_than_the_first_read(factory, monkeypatch, facts_key):
    """Slices whose header runs past the first read (a long private element before the pixel data) are
    read once more, longer, and still take the memo's path; their records equal fresh ones."""
    import pydicom

    import fmct.io.dicom_slice as dicom_slice

    files = sorted(factory.ct(n=4).files)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.add_new(0x00291010, "OB", bytes(3 * dicom_slice.HEAD_BYTES))
        _save(ds, path)
    sizes: list[int | None] = []
    read_start = dicom_slice.read_start

    def counted(path, size=None):
        sizes.append(size)
        return read_start(path, size)

    monkeypatch.setattr(members, "read_start", counted)
    remembered = members.read_chunk(files)
    assert sizes.count(dicom_slice.LONG_HEAD_BYTES) == len(files)
    assert all(r.facts is not None for r in remembered)
    assert [_member_key(r, facts_key) for r in remembered] == [
        _member_key(members.read_member(p), facts_key) for p in files
    ]
