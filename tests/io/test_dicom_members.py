"""Discovery's header reading in worker processes gives exactly what reading in this process gives: the same
series (ids, files, order, slice facts), the same rejections with the same reasons, the same progress end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import fmct.io.dicom_members as members
from fmct.io.dicom import discover

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "dcm_qa_ct" / "Philips" / "S21570"


def _facts_key(facts) -> str | None:
    """A comparable form of a :class:`SliceFacts` (its frame holds numpy arrays)."""
    if facts is None:
        return None
    fields = {**dataclasses.asdict(facts), **dataclasses.asdict(facts.frame)}
    return repr({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in sorted(fields.items())})


def _key(found) -> tuple:
    series = [
        (s.series_uid, s.scan_id, s.patient_id, s.study_id, s.files, s.modality, s.n_files, s.series_number,
         s.description, None if s.facts is None else [_facts_key(f) for f in s.facts])
        for s in found.series
    ]  # fmt: skip
    return series, found.rejected


@pytest.fixture
def mixed(factory, tmp_path) -> list[Path]:
    """Several series (two in one folder), a non-DICOM file, a truncated DICOM file, NIfTI files and, when
    the real data is present, a Philips scout, a secondary capture and their DICOMDIR indexes."""
    root = tmp_path / "mixed"
    factory.ct(n=12, folder=root / "p1" / "a")
    factory.ct(n=9, folder=root / "p1" / "a", rescale=[(1.0, -1024.0), (0.5, -1000.0)])
    factory.ct(n=7, folder=root / "p2" / "deep" / "b", big_endian=True)
    factory.ct(n=5, folder=root / "p3", modality="MR")
    (root / "notes.txt").write_text("not an image")
    whole = factory.ct(n=2, folder=tmp_path / "spare").files[0].read_bytes()
    (root / "p2" / "truncated.dcm").write_bytes(whole[:300])
    (root / "scan.nii.gz").write_bytes(b"\x1f\x8b not read")
    (root / "p1" / "other.nii").write_bytes(b"not read either")
    inputs = [root]
    if REAL.is_dir():
        inputs += [REAL / "S1000", REAL / "S4010"]
    return inputs


def test_parallel_discovery_equals_serial_on_a_mixed_folder(mixed, monkeypatch):
    serial = discover(mixed)
    calls: list[int] = []
    read_parallel = members._read_parallel

    def counted(paths, workers, progress):
        calls.append(workers)
        return read_parallel(paths, workers, progress)

    monkeypatch.setattr(members, "BREAK_EVEN_READS_SAVED", 0)  # a pool even for these few files
    monkeypatch.setattr(members, "_read_parallel", counted)
    monkeypatch.setattr(members, "chunk_size", lambda total, workers: 5)  # several chunks per worker
    parallel = discover(mixed, workers=2)
    assert calls == [2]
    assert _key(parallel) == _key(serial)
    assert len(serial.series) == (6 if REAL.is_dir() else 4)
    reasons = {r.path.name: r.reason for r in serial.rejected}
    assert reasons["notes.txt"].startswith("not a DICOM file")
    assert "truncated" in reasons["truncated.dcm"]
    assert not any(name.endswith((".nii", ".nii.gz")) for name in reasons)
    if REAL.is_dir():
        assert sorted(r.reason.startswith("DICOMDIR index") for r in serial.rejected).count(True) == 2
        scout = [s for s in serial.series if s.files[0].parent.name == "S1000"]
        assert len(scout) == 1 and scout[0].n_files == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_progress_counts_every_file_read(mixed, monkeypatch, workers):
    monkeypatch.setattr(members, "BREAK_EVEN_READS_SAVED", 0)
    seen: list[tuple[int, int]] = []
    found = discover(mixed, workers=workers, progress=lambda done, total: seen.append((done, total)))
    n_files = sum(s.n_files for s in found.series) + len(found.rejected)
    assert seen[-1] == (n_files, n_files)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_pool_only_where_it_pays():
    assert not members.worth_a_pool(100_000, 1)
    assert not members.worth_a_pool(200, 2)
    assert members.worth_a_pool(3_000, 2)
    assert members.worth_a_pool(1_000, 32) and not members.worth_a_pool(1_000, 2)


def _member_key(rec) -> tuple:
    if isinstance(rec, members.Rejected):
        return ("rejected", rec.path, rec.reason)
    return (rec.path, rec.series_uid, rec.modality, rec.patient_id, rec.study_uid, rec.number,
            rec.description, _facts_key(rec.facts))  # fmt: skip


def test_what_a_series_shares_is_remembered_without_changing_a_record(mixed):
    """``read_chunk`` remembers facts and descriptions from file to file: every record equals the one read
    with no memory."""
    from fmct.io.dicom_discover import iter_files

    files = [p for p in iter_files(mixed) if not p.name.endswith((".nii", ".nii.gz"))]
    remembered = members.read_chunk(files)
    fresh = [members.read_member(p) for p in files]
    assert [_member_key(r) for r in remembered] == [_member_key(r) for r in fresh]
    assert sum(isinstance(r, members.Member) and r.facts is not None for r in fresh) >= 28


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


def test_a_remembered_description_equals_a_fresh_one(tmp_path):
    """Files with the same description bytes share one memo entry; other identifying bytes (another
    patient) or another character set get their own, so each result is what a fresh cleaning gives."""
    cases = [("MÜLLER^ANNA", "ISO_IR 100"), ("MÜLLER^ANNA", "ISO_IR 100"), ("SCHMIDT^ANNA", "ISO_IR 100"),
             ("MÜLLER^ANNA", "ISO_IR 192"), ("MÜLLER^ANNA", "ISO_IR 100")]  # fmt: skip
    files = [_written(tmp_path / f"{i}.dcm", patient, charset) for i, (patient, charset) in enumerate(cases)]
    memo: dict = {}
    remembered = [members.read_member(p, memo) for p in files]
    assert [_member_key(r) for r in remembered] == [_member_key(members.read_member(p)) for p in files]
    assert [r.description for r in remembered] == ["Kopf * 5mm", "Kopf * 5mm", "Kopf Müller 5mm",
                                                   "Kopf * 5mm", "Kopf * 5mm"]  # fmt: skip
    assert len(memo) == 3


def test_odd_files_read_with_a_memo_as_without(tmp_path):
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
    assert [_member_key(r) for r in remembered] == [_member_key(r) for r in fresh]
    assert sum(isinstance(r, members.Member) for r in fresh) >= 100
    assert sum(isinstance(r, members.Rejected) for r in fresh) >= 6
    assert members.read_member(files[0], memo) is not None and len(memo) == 1


def _save(ds, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)


def test_positions_the_memo_path_cannot_read_are_read_by_pydicom(factory):
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
    assert [_member_key(r) for r in remembered] == [_member_key(r) for r in fresh]
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
