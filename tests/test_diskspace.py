"""A full disk, however the failed write shows it, becomes one "no space left on <folder>" error."""

from __future__ import annotations

import errno
from collections import namedtuple

import pytest

from fmct import diskspace
from fmct.diskspace import NoSpaceError, no_space
from fmct.store.writer import atomic_write_bytes

Usage = namedtuple("Usage", "total used free")


def test_errno_decides_when_there_is_one(tmp_path):
    p = tmp_path / "x.npy"
    assert no_space(OSError(errno.ENOSPC, "No space left on device"), p)
    assert no_space(OSError(errno.EDQUOT, "Disk quota exceeded"), p)
    assert not no_space(OSError(errno.EACCES, "Permission denied"), p)
    assert not no_space(ValueError("bad"), p)
    chained = RuntimeError("enforce fail at inline_container.cc")
    chained.__cause__ = OSError(errno.ENOSPC, "full")
    assert no_space(chained, p)


def test_without_errno_the_free_space_decides(tmp_path, monkeypatch):
    short_write = OSError("17280000 requested and 4096 written")  # numpy's tofile: no errno
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: Usage(10 << 30, 10 << 30, 0))
    assert no_space(short_write, tmp_path / "x.npy")
    assert no_space(
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos"), tmp_path / "c"
    )
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: Usage(10 << 30, 1 << 30, 9 << 30))
    assert not no_space(short_write, tmp_path / "x.npy")


def test_atomic_write_says_no_space_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "sub" / "manifest.parquet"
    atomic_write_bytes(target, lambda f: f.write(b"old"))

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(NoSpaceError) as err:
        atomic_write_bytes(target, full)
    assert str(err.value) == f"no space left on {target.parent} (writing manifest.parquet)"
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and sorted(target.parent.iterdir()) == [target]


def test_no_space_error_pickles_across_a_process_pool(tmp_path):
    import pickle

    e = pickle.loads(pickle.dumps(NoSpaceError(tmp_path / "a.npy")))
    assert isinstance(e, NoSpaceError) and str(e) == f"no space left on {tmp_path} (writing a.npy)"
