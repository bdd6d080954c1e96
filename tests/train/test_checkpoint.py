"""Checkpoint writes: a full disk is named and the last checkpoint kept."""

from __future__ import annotations

import errno

import pytest
import torch

from fmct.diskspace import NoSpaceError
from fmct.train import checkpoint
from fmct.train.checkpoint import load_checkpoint, save_checkpoint


def test_full_disk_names_the_run_folder_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"step": 4, "w": torch.ones(3)})

    def full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    monkeypatch.setattr(
        checkpoint, "no_space", lambda exc, path: True
    )  # what the free-space check says on a full disk (its own test: tests/test_diskspace.py)
    with pytest.raises(NoSpaceError, match=rf"no space left on {tmp_path} \(writing checkpoint.pt\)"):
        save_checkpoint(tmp_path, {"step": 8})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_enospc_from_the_write_is_named(tmp_path, monkeypatch):
    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(NoSpaceError, match="no space left on"):
        save_checkpoint(tmp_path, {"step": 8})
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_pass_through(tmp_path, monkeypatch):
    def broken(obj, f):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(checkpoint.torch, "save", broken)
    with pytest.raises(OSError, match="Input/output error") as err:
        save_checkpoint(tmp_path, {"step": 8})
    assert not isinstance(err.value, NoSpaceError)


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_resume_removes_temp_files_of_killed_writes_but_not_live_ones(tmp_path):
    import os

    save_checkpoint(tmp_path, {"step": 4})
    dead = tmp_path / f".checkpoint.pt.tmp-{_dead_pid()}"
    dead.write_bytes(b"x" * 1000)  # what a SIGKILL during torch.save leaves
    dead_best = tmp_path / f".best.json.tmp-{_dead_pid()}"
    dead_best.write_text("{")
    live = tmp_path / f".checkpoint.pt.tmp-{os.getppid()}"  # a writer that is still running
    live.write_bytes(b"y")
    assert load_checkpoint(tmp_path)["step"] == 4
    assert not dead.exists() and not dead_best.exists() and live.exists()
    dead2 = tmp_path / f".checkpoint.pt.tmp-{_dead_pid()}"
    dead2.write_bytes(b"z")
    save_checkpoint(tmp_path, {"step": 8})
    assert not dead2.exists() and live.exists()
