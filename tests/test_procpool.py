"""The ingest process pool's workers die with the process that started them, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
_PARENT = """
import os, sys, time
from fmct.procpool import spawn_pool

if __name__ == "__main__":
    pool = spawn_pool(1)
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split(")")[-1].split()[0] != "Z"


def test_pool_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker)
    finally:
        parent.kill()


_REUSE = """
import resource, sys
import numpy as np
from fmct.procpool import reuse_freed_memory

def faults_of_a_scan():  # the large arrays of one scan (source, resampled, crop, buffer) held together
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(n << 20, np.uint8) for n in (15, 17, 8, 3)]
    del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = [faults_of_a_scan() for _ in range(3)]
applied = reuse_freed_memory()
assert reuse_freed_memory() == applied  # once per process
faults_of_a_scan()  # the first scan after it still takes its pages from the system
kept = [faults_of_a_scan() for _ in range(3)]
print(applied, min(default), max(kept))
"""


def test_reuse_freed_memory_keeps_large_blocks_for_the_next_scan():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", _REUSE], env=env, capture_output=True, text=True, check=True)
    applied, default, kept = out.stdout.split()
    if not sys.platform.startswith("linux"):
        assert applied == "False"
        return
    assert applied == "True"
    # by default glibc hands the freed 43 MB back and every scan faults fresh zeroed pages in (one per 4 KiB,
    # or per 2 MiB with transparent huge pages); kept, the next scan reuses them
    assert int(default) >= 10 and int(kept) <= 4, out.stdout
