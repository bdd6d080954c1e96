"""Discovery's header reading in worker processes (fmct.io.dicom_pool) gives exactly what reading in this
process gives: the same series (ids, files, order, slice facts), the same rejections with the same reasons, the
same progress end."""

from __future__ import annotations

import pytest

import fmct.io.dicom_pool as pool
from fmct.io.dicom import discover


def _key(found, facts_key) -> tuple:
    series = [
        (s.series_uid, s.scan_id, s.patient_id, s.study_id, s.files, s.modality, s.n_files, s.series_number,
         s.description, None if s.facts is None else [facts_key(f) for f in s.facts])
        for s in found.series
    ]  # fmt: skip
    return series, found.rejected


def test_parallel_discovery_equals_serial_on_a_mixed_folder(mixed, monkeypatch, facts_key):
    serial = discover(mixed)
    calls: list[int] = []
    read_parallel = pool._read_parallel

    def counted(paths, workers, progress):
        calls.append(workers)
        return read_parallel(paths, workers, progress)

    monkeypatch.setattr(pool, "BREAK_EVEN_READS_SAVED", 0)  # a pool even for these few files
    monkeypatch.setattr(pool, "_read_parallel", counted)
    monkeypatch.setattr(pool, "chunk_size", lambda total, workers: 5)  # several chunks per worker
    parallel = discover(mixed, workers=2)
    assert calls == [2]
    assert _key(parallel, facts_key) == _key(serial, facts_key)
    assert len(serial.series) == (6 if len(mixed) > 1 else 4)
    reasons = {r.path.name: r.reason for r in serial.rejected}
    assert reasons["notes.txt"].startswith("not a DICOM file")
    assert "truncated" in reasons["truncated.dcm"]
    assert not any(name.endswith((".nii", ".nii.gz")) for name in reasons)
    if len(mixed) > 1:
        assert sorted(r.reason.startswith("DICOMDIR index") for r in serial.rejected).count(True) == 2
        scout = [s for s in serial.series if s.files[0].parent.name == "S1000"]
        assert len(scout) == 1 and scout[0].n_files == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_progress_counts_every_file_read(mixed, monkeypatch, workers):
    monkeypatch.setattr(pool, "BREAK_EVEN_READS_SAVED", 0)
    seen: list[tuple[int, int]] = []
    found = discover(mixed, workers=workers, progress=lambda done, total: seen.append((done, total)))
    n_files = sum(s.n_files for s in found.series) + len(found.rejected)
    assert seen[-1] == (n_files, n_files)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_pool_only_where_it_pays():
    """Break-even measured at ~4000 files with 2 workers (~0.2 ms a header, ~0.4 s of pool start-up)."""
    assert not pool.worth_a_pool(100_000, 1)
    assert not pool.worth_a_pool(200, 2)
    assert not pool.worth_a_pool(3_000, 2) and pool.worth_a_pool(5_000, 2)
    assert pool.worth_a_pool(3_000, 32)


def test_records_travel_without_their_paths(mixed, facts_key):
    """A worker's records, pickled as the pool sends them, give back the very records read here."""
    import pickle

    from fmct.io.dicom_discover import iter_files
    from fmct.io.dicom_members import Member, read_chunk

    files = [p for p in iter_files(mixed) if not p.name.endswith((".nii", ".nii.gz"))]
    sent = pickle.dumps(pool.read_records(files), protocol=pickle.HIGHEST_PROTOCOL)
    assert all(str(p).encode() not in sent for p in files)
    back, here = pool.with_paths(files, pickle.loads(sent)), read_chunk(files)
    assert [type(r) for r in back] == [type(r) for r in here] and Member in {type(r) for r in here}
    for a, b in zip(back, here, strict=True):
        assert (a.path, facts_key(getattr(a, "facts", None))) == (
            b.path,
            facts_key(getattr(b, "facts", None)),
        )
        if isinstance(a, Member):
            assert (a.series_uid, a.modality, a.patient_id, a.study_uid, a.number, a.description) == (
                b.series_uid, b.modality, b.patient_id, b.study_uid, b.number, b.description)  # fmt: skip
        else:
            assert a == b
