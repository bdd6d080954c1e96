"""The store write lock: one writer per store or shard, stale locks taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fmct.ingest import run_ingest as ingest
from fmct.store.lock import LOCK, StoreBusy, StoreLock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with StoreLock(tmp_path):
        with pytest.raises(
            StoreBusy, match=rf"store {tmp_path} is being written by pid {os.getpid()} on host"
        ):
            StoreLock(tmp_path).acquire()
    with StoreLock(tmp_path) as again:  # released: the next run gets it, and nothing is "stale"
        assert again.took_over is None


def test_shards_of_one_array_job_run_side_by_side_but_overlaps_are_refused(tmp_path):
    with StoreLock(tmp_path, (1, 2)):
        with StoreLock(tmp_path, (2, 2)):
            pass
        for other in [(1, 2), None, (1, 3)]:
            with pytest.raises(StoreBusy, match="shard 1/2 of store"):
                StoreLock(tmp_path, other).acquire()
    with StoreLock(tmp_path):
        with pytest.raises(StoreBusy, match=f"store {tmp_path} is being written"):
            StoreLock(tmp_path, (2, 2)).acquire()


def test_a_stale_lock_of_a_dead_process_is_taken_over(inputs, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    pid = _dead_pid()
    (store / LOCK).write_text(json.dumps({"pid": pid, "host": "h", "started": "2026-01-01T00:00:00"}))
    summary = ingest([inputs], store)
    assert summary.ok == 2
    assert summary.took_over == f"pid {pid} on host h since 2026-01-01T00:00:00"
    assert (store / LOCK).read_text() == ""  # released


def test_a_file_system_without_locks_runs_unlocked_and_says_so(tmp_path, monkeypatch):
    import errno

    from fmct.store import lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    with StoreLock(tmp_path) as held:
        assert (
            held.unlocked
            == f"cannot lock {tmp_path / LOCK} (No locks available): run one ingest at a time on this store"
        )
