"""Helpers for the reliability tests (importable from the tests: conftest.py puts this folder on sys.path): tiny NIfTI heads, killable CLI subprocesses, the tiny
pretraining config, and a byte scanner for PHI sentinels."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

#: Pretraining overrides that make a run take well under a second per step on one CPU core.
TINY_PRETRAIN = [
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=8",
    "data.global_size=32", "data.local_size=16", "data.n_local=2", "data.cache_size=16",
    "data.num_workers=0", "dino.out_dim=64", "dino.ibot_out_dim=64", "dino.head_hidden_dim=32",
    "dino.head_bottleneck_dim=16", "batch_size=2", "optim.warmup_steps=2",
    "optim.warmup_teacher_temp_steps=3", "monitor_every=0", "schedule_steps=8",
]  # fmt: skip

#: Python run in a child process: the real ``fmct`` CLI with a delay injected before a named function of
#: the package (``RELIABILITY_SLOW=module:attr``, ``RELIABILITY_DELAY_S`` seconds). The delay changes only
#: timing, so a test can SIGKILL the process inside a known window instead of racing it.
SLOW_CLI = """
import os, sys, time, importlib
spec = os.environ.get("RELIABILITY_SLOW")
if spec:
    mod_name, _, attr = spec.partition(":")
    owner_name, _, meth = attr.partition(".")
    mod = importlib.import_module(mod_name)
    owner = mod if not meth else getattr(mod, owner_name)
    name = meth or owner_name
    orig = getattr(owner, name)
    delay = float(os.environ.get("RELIABILITY_DELAY_S", "0.3"))
    def slow(*a, **k):
        time.sleep(delay)
        return orig(*a, **k)
    setattr(owner, name, slow)
from fmct.cli import app
sys.argv[0] = "fmct"
app()
"""


def child_env(**extra: str) -> dict[str, str]:
    """Environment of CLI children: one thread (same float reductions as the in-process runs), no colour."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_COLOR": "1", "TERM": "dumb"}
    env.update(extra)
    return env


def start_cli(args: list[str], cwd: Path, slow: str | None = None, delay_s: float = 0.3) -> subprocess.Popen:
    """Start ``fmct ARGS`` in its own session (process group), optionally slowed (see :data:`SLOW_CLI`)."""
    extra = {"RELIABILITY_SLOW": slow, "RELIABILITY_DELAY_S": str(delay_s)} if slow else {}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *args],
        cwd=cwd,
        env=child_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Poll ``cond`` every 5 ms; fail if the process exits first or the time runs out."""
    t_end = time.monotonic() + timeout_s
    while not cond():
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"process ended (rc {proc.returncode}) before the kill point:\n{out[-3000:]}")
        if time.monotonic() > t_end:
            kill_group(proc)
            pytest.fail("kill point not reached in time")
        time.sleep(0.005)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group of ``proc`` (workers included) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    if proc.stdout:
        proc.stdout.close()


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still alive (zombies count as dead)."""
    import psutil

    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False


def write_head(path: Path, seed: int, shape=(48, 48, 30), spacing=(1.0, 1.0, 2.0)) -> Path:
    """A noisy 40 HU ball (radius 20 mm) with a 1000 HU shell, in air, as float32 NIfTI (RAS)."""
    rng = np.random.default_rng(seed)
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    r = np.sqrt(((idx @ aff[:3, :3].T + aff[:3, 3]) ** 2).sum(-1))
    hu = np.where(r < 22.0, 1000.0, -1000.0)
    hu[r < 19.0] = 40.0
    hu += rng.normal(0.0, 5.0, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(hu.astype(np.float32), aff), str(path))
    return path


def write_heads(folder: Path, n: int, **kw) -> list[Path]:
    """``n`` heads ``folder/head_XX.nii.gz`` (different noise)."""
    return [write_head(folder / f"head_{i:02d}.nii.gz", seed=i, **kw) for i in range(n)]


def file_payloads(path: Path) -> Iterable[bytes]:
    """The raw bytes of ``path`` and, for gzip files, the decompressed bytes too."""
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        try:
            yield gzip.decompress(data)
        except (OSError, EOFError):
            pass


def find_bytes(roots: Iterable[Path], needles: Iterable[bytes]) -> list[tuple[str, str]]:
    """``[(file, needle)]`` for every file under ``roots`` whose bytes (or gunzipped bytes) contain a needle
    (also as UTF-16-LE, as some writers store text that way)."""
    pats = []
    for n in needles:
        pats += [(n, n), (n, n.decode().encode("utf-16-le"))]
    hits: list[tuple[str, str]] = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            for payload in file_payloads(f):
                for name, pat in pats:
                    if pat in payload:
                        hits.append((str(f), name.decode()))
    return sorted(set(hits))
