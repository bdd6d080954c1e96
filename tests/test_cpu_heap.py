"""fmct.cpu_heap: a freed large tensor's pages are reused by the next one instead of faulted in again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fmct import cpu_heap

SRC = str(Path(cpu_heap.__file__).resolve().parents[1])

#: Prints the median minor page faults of the last 7 of 12 passes that allocate and free large tensors as a ViT's
#: MLP does (GELU of a 42 MB hidden layer, a matrix product, a scaled copy), after calling
#: reuse_freed_memory() when argv[1] == "1" (the first passes grow the heap until the freed blocks fit).
PROBE = """
import json, resource, sys
import torch
import torch.nn.functional as F
from fmct import cpu_heap
applied = cpu_heap.reuse_freed_memory() if sys.argv[1] == "1" else None
x, w = torch.randn(8 * 1729, 768), torch.randn(768, 192)
def one_pass():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = F.gelu(x)
    z = y @ w
    y = y * 2
    del y, z
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [one_pass() for _ in range(12)]
print(json.dumps({"applied": applied, "faults": sorted(faults[-7:])[3]}))
"""


def _probe(apply: bool, env: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in (env or os.environ).items() if k not in cpu_heap.USER_SETTINGS} | (env or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if apply else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists in glibc only")
def test_large_tensor_pages_are_reused_after_the_call() -> None:
    pages = 8 * 1729 * 768 * 4 // 4096  # of one hidden layer
    default = _probe(False)
    tuned = _probe(True)
    # glibc's default: a fresh mmap per large tensor, every page faulted in on each pass
    assert default["faults"] > pages, (default, tuned)
    assert tuned["applied"] is True
    # the freed blocks are reused from the heap
    assert tuned["faults"] < pages // 10, (default, tuned)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists in glibc only")
def test_user_malloc_settings_are_respected() -> None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    assert _probe(True, env)["applied"] is False


_REUSE = """
import resource, sys
import numpy as np
from fmct.cpu_heap import reuse_freed_memory
from fmct.ingest.worker import HEAP_BYTES

def faults_of_a_scan():  # the large arrays of one scan (source, resampled, crop, buffer) held together
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(n << 20, np.uint8) for n in (15, 17, 8, 3)]
    del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = [faults_of_a_scan() for _ in range(3)]
applied = reuse_freed_memory(*HEAP_BYTES)  # an ingest worker's setting
assert reuse_freed_memory(*HEAP_BYTES) == applied  # once per process
faults_of_a_scan()  # the first scan after it still takes its pages from the system
kept = [faults_of_a_scan() for _ in range(3)]
print(applied, min(default), max(kept))
"""


def test_an_ingest_workers_setting_keeps_large_blocks_for_the_next_scan():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
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


def test_a_different_setting_is_applied_again(monkeypatch) -> None:
    """malloc holds one setting: asking for another, then the first again, applies each anew."""
    calls = []
    monkeypatch.setattr(cpu_heap, "_apply", lambda *key: calls.append(key) or True)
    monkeypatch.setattr(cpu_heap, "_last", None)
    small, big = (32 << 20, 64 << 20), (256 << 20, 256 << 20)
    for key in (small, small, big, small):
        assert cpu_heap.reuse_freed_memory(*key) is True
    assert calls == [small, big, small]
