"""SIGKILL the parent of `fmct ingest --workers 2`: its worker processes exit within seconds (before,
they stayed alive forever, ~0.4 GB each)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
from reliakit import kill_group, start_cli, wait_until, write_heads


def _workers(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [
        k
        for k in kids
        if "spawn_main" in " ".join(k.cmdline()) and "resource_tracker" not in " ".join(k.cmdline())
    ]


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def test_workers_exit_when_the_ingest_parent_is_killed(tmp_path: Path) -> None:
    write_heads(tmp_path / "in", 4)
    args = ["ingest", str(tmp_path / "in"), "--out", str(tmp_path / "store"), "--workers", "2"]
    # the parent is slowed while it collects results, so the pool (and its workers) is alive at the kill
    proc = start_cli(args, tmp_path, slow="fmct.ingest.summary:IngestSummary.add", delay_s=3.0)
    try:
        wait_until(lambda: len(_workers(proc.pid)) == 2, proc)
        workers = _workers(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as an OOM killer or `kill -9 PID` would
        proc.wait(timeout=10)
        t_end = time.monotonic() + 10.0
        while _alive(workers) and time.monotonic() < t_end:
            time.sleep(0.05)
        assert not _alive(workers), [p.pid for p in _alive(workers)]
    finally:
        for p in _alive(_workers(proc.pid)):
            p.kill()
        kill_group(proc)
