"""A damaged store file (a truncated ``.npy``): recorded size/CRC-32, re-done by re-ingest, named by every
read (before: re-ingest counted it "already present" and a load failed with numpy's message only)."""

from __future__ import annotations

import json
import os

import pytest

from fmct.ingest import run_ingest as ingest
from fmct.store import ScanStore, StoreReadError
from fmct.store.writer import file_crc32, npy_size_problem, scan_paths


def _truncate(path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def test_sidecar_records_the_size_and_crc32_of_the_scan_file(inputs, tmp_path):
    store = tmp_path / "store"
    ingest([inputs], store)
    st = ScanStore(store)
    for sid in st.scan_ids:
        npy, side = scan_paths(store, sid)
        meta = json.loads(side.read_text())
        assert meta["file_bytes"] == npy.stat().st_size
        assert meta["crc32"] == file_crc32(npy)
        assert st.verify(sid) is None


def test_a_truncated_scan_is_named_by_load_and_verify(inputs, tmp_path):
    store = tmp_path / "store"
    ingest([inputs], store)
    st = ScanStore(store)
    sid = st.scan_ids[0]
    npy, _ = scan_paths(store, sid)
    size = npy.stat().st_size
    _truncate(npy)
    for mmap in (False, True):
        with pytest.raises(
            StoreReadError, match=rf"scan {sid}: file truncated \({size // 2} of {size} bytes\)"
        ):
            st.load(sid, mmap=mmap)
    with pytest.raises(StoreReadError) as err:
        st.load(sid)
    assert str(npy) in str(err.value)
    assert "truncated" in st.verify(sid)
    # same size, other bytes: only the checksum sees it
    with open(npy, "r+b") as f:
        f.truncate(size)
    assert "checksum" in st.verify(sid)


def test_size_check_works_without_a_recorded_size(tmp_path):
    import numpy as np

    p = tmp_path / "a.npy"
    np.save(p, np.zeros((4, 5, 6), np.int16))
    assert npy_size_problem(p) is None
    _truncate(p, 0.9)
    assert "truncated" in npy_size_problem(p)


def test_reingest_redoes_a_truncated_scan_instead_of_counting_it_present(inputs, tmp_path):
    store = tmp_path / "store"
    first = ingest([inputs], store)
    assert first.ok == 2
    sid = ScanStore(store).scan_ids[0]
    npy, _ = scan_paths(store, sid)
    _truncate(npy)
    again = ingest([inputs], store)
    assert again.ok == 1 and again.present == 1
    assert len(again.damaged) == 1 and again.damaged[0].startswith(f"{sid} ({sid}.npy: file truncated")
    st = ScanStore(store)
    assert st.verify(sid) is None and st.load(sid).shape == tuple(
        json.loads(scan_paths(store, sid)[1].read_text())["shape"]
    )
