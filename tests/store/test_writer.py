"""write_scan: the .npy's fsync runs in a helper thread while its CRC is taken and the sidecar is written
and fsynced; the sidecar is moved into place only after the .npy's fsync has returned. The sidecar records
the file's size and CRC; a failed fsync or sidecar write leaves neither new file nor a temporary one; a full
disk names the file being written."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from fmct.diskspace import NoSpaceError
from fmct.io.volume import Volume
from fmct.store import writer
from fmct.store.writer import file_crc32, save_npy, scan_paths, write_scan


def _vol() -> Volume:
    arr = np.random.default_rng(0).integers(-1024, 3000, (31, 40, 27)).astype(np.int16)
    return Volume(arr, np.diag([1.0, 1.0, 1.0, 1.0]), {"source_kind": "dicom"})


def _is_npy(fd: int) -> bool:
    """Whether ``fd`` is the scan's ``.npy``: its temporary file, or the file already moved into place (the
    fsync thread may run after the move)."""
    return Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith("s-1.npy")


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
        if _is_npy(fd):
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


def test_the_sidecar_is_placed_only_after_the_npy_is_on_disk(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace
    sidecar_synced = threading.Event()

    def fsync(fd):
        is_npy = _is_npy(fd)
        if is_npy:  # a slow disk: the .npy's sync ends only once the sidecar's did (or after 10 s)
            sidecar_synced.wait(10.0)
        real_fsync(fd)
        events.append(("synced", ".npy" if is_npy else ".json"))
        if not is_npy:
            sidecar_synced.set()

    def replace(src, dst):
        real_replace(src, dst)
        events.append(("placed", Path(dst).suffix))

    monkeypatch.setattr(writer.os, "fsync", fsync)
    monkeypatch.setattr(writer.os, "replace", replace)
    write_scan(tmp_path, "s-1", _vol(), {})
    assert sidecar_synced.is_set()  # the sidecar was written and synced while the .npy's fsync ran
    assert events.index(("synced", ".json")) < events.index(("synced", ".npy"))
    assert events.index(("synced", ".npy")) < events.index(("placed", ".json"))
    assert events.index(("placed", ".npy")) < events.index(("placed", ".json"))


def test_a_failed_sidecar_write_leaves_no_new_file(tmp_path, monkeypatch):
    real = writer.atomic_write_bytes

    def full(path, write, before_replace=None):
        if str(path).endswith(".json"):
            raise NoSpaceError(path)
        return real(path, write, before_replace)

    monkeypatch.setattr(writer, "atomic_write_bytes", full)
    with pytest.raises(NoSpaceError, match=r"writing s-1\.json"):
        write_scan(tmp_path, "s-1", _vol(), {})
    assert not any(p.exists() for p in scan_paths(tmp_path, "s-1"))
    assert not list(tmp_path.rglob("*.tmp"))


def test_before_replace_runs_after_the_fsync_and_can_abort(tmp_path):
    target = tmp_path / "f.bin"
    seen = []
    writer.atomic_write_bytes(target, lambda f: f.write(b"abc"), before_replace=lambda: seen.append(1))
    assert seen == [1] and target.read_bytes() == b"abc"

    def other_file_full():
        raise NoSpaceError(tmp_path / "other.npy")

    with pytest.raises(NoSpaceError, match=r"writing other\.npy"):  # names the file that hit the full disk
        writer.atomic_write_bytes(tmp_path / "g.bin", lambda f: f.write(b"abc"), other_file_full)
    assert not (tmp_path / "g.bin").exists() and not list(tmp_path.glob("*.tmp"))
