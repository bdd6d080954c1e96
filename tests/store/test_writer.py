"""write_scan: the .npy's fsync runs in a helper thread while its CRC is taken (``atomic_write_bytes``'
``overlap``); what it stores and how it fails are as before: the sidecar records the file's size and CRC, a
failed fsync leaves no temporary file and no scan in place, a full disk names the file being written."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from fmct.diskspace import NoSpaceError
from fmct.io.volume import Volume
from fmct.store import writer
from fmct.store.writer import file_crc32, save_npy, scan_paths, write_scan


def _vol() -> Volume:
    arr = np.random.default_rng(0).integers(-1024, 3000, (31, 40, 27)).astype(np.int16)
    return Volume(arr, np.diag([1.0, 1.0, 1.0, 1.0]), {"source_kind": "dicom"})


def test_the_sidecar_records_the_npy_files_size_and_crc(tmp_path):
    npy, side = write_scan(tmp_path, "s-1", _vol(), {"spacing": 1.0})
    meta = json.loads(side.read_text())
    assert meta["file_bytes"] == npy.stat().st_size and meta["crc32"] == file_crc32(npy)
    assert np.array_equal(np.load(npy), _vol().array)
    assert not list(tmp_path.rglob("*.tmp"))
    with open(tmp_path / "plain.npy", "wb") as f:  # save_npy: the same bytes and CRC
        size, crc = save_npy(f, _vol().array)
    assert (tmp_path / "plain.npy").read_bytes() == npy.read_bytes() and f"{crc:08x}" == meta["crc32"]
    assert size == meta["file_bytes"]


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_a_failed_fsync_of_the_npy_leaves_nothing(tmp_path, monkeypatch, code):
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".npy." in os.readlink(
            f"/proc/self/fd/{fd}"
        ):
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(writer.os, "fsync", fsync)
    expected = NoSpaceError if code == errno.ENOSPC else OSError
    with pytest.raises(expected) as info:
        write_scan(tmp_path, "s-1", _vol(), {})
    if code == errno.ENOSPC:
        assert "(writing s-1.npy)" in str(info.value)
    assert not any(p.exists() for p in scan_paths(tmp_path, "s-1"))
    assert not list(tmp_path.rglob("*.tmp"))


def test_overlap_runs_while_the_file_is_synced_and_its_errors_leave_no_file(tmp_path):
    target = tmp_path / "f.bin"
    assert writer.atomic_write_bytes(target, lambda f: f.write(b"abc"), overlap=lambda n: n * 2) == 6
    assert target.read_bytes() == b"abc"

    def broken(n):
        raise ValueError("checksum failed")

    with pytest.raises(ValueError, match="checksum failed"):
        writer.atomic_write_bytes(tmp_path / "g.bin", lambda f: f.write(b"abc"), overlap=broken)
    assert not (tmp_path / "g.bin").exists() and not list(tmp_path.glob("*.tmp"))
