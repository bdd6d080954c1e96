"""Process pools for ingest work: spawned workers that die with the process that started them (even when it
is killed with SIGKILL) and use one compute thread each. Used by discovery's header reading
(:mod:`fmct.io.dicom_discover`) and by the ingest workers (:mod:`fmct.ingest.worker`)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this worker process exit when ``parent_pid`` dies, even by SIGKILL: ``prctl(PR_SET_PDEATHSIG,
    SIGKILL)`` on Linux, plus a watchdog thread that polls ``getppid`` every ``poll_s`` seconds (other
    platforms, and the window before ``prctl``)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the watchdog remains
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="fmct-parent-watch", daemon=True).start()


def init_worker(parent_pid: int) -> None:
    """Die with the parent; one compute thread per worker. Ingest never imports torch (it would cost ~230 MB
    of RSS per worker); should anything import it later, it reads these variables then."""
    die_with_parent(parent_pid)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (a fresh interpreter each: no inherited state or threads) set
    up by :func:`init_worker`."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(),),
    )
